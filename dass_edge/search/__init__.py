"""Latency-constrained student search: algorithms (evolution, random, exhaustive) and the Pareto front."""

"""Measured latency lookup tables (JSON), installed as ``dass_edge.latency_tables``."""

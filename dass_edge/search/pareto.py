"""Pareto front of (latency, accuracy): the students no other student beats on both."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["pareto_front"]


def pareto_front(latency: Sequence[float], accuracy: Sequence[float]) -> list[int]:
    """Indices of the non-dominated points (lower latency and higher accuracy are better),
    sorted by latency. Exact duplicates keep their first occurrence."""
    order = sorted(range(len(latency)), key=lambda i: (latency[i], -accuracy[i], i))
    front: list[int] = []
    best = float("-inf")
    for i in order:
        if accuracy[i] > best:
            front.append(i)
            best = accuracy[i]
    return front

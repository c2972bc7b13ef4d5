"""Pareto front of (latency, accuracy): the students no other student beats on both; and the top-k picked from it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dass_edge.space import Arch

__all__ = ["pareto_front", "top_picks"]


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


def top_picks(archs: list[Arch], accs: list[float], lats: list[float], front: list[int], k: int,
              teacher: int | None = None, tolerance: float = 0.0) -> list[int]:
    """The ``k`` most accurate students of the Pareto front (a student another beats on both latency and
    accuracy is never worth shipping), topped up with the best of the rest when the front is shorter.

    ``teacher``: the index of the teacher's own shape when it fits the budget. Distilled, it gives back
    the teacher itself, so no slower student is worth picking, and it ranks first unless a student is
    predicted more accurate by more than ``tolerance`` (the predictor's error, in points)."""

    def order(i: int) -> tuple:
        return (-accs[i], lats[i], archs[i].key())

    everyone = range(len(archs))
    keep = list(everyone) if teacher is None else [i for i in everyone if lats[i] < lats[teacher]]
    first: list[int] = []
    if teacher is not None:
        if max((accs[i] for i in keep), default=-math.inf) - accs[teacher] <= tolerance:
            first, k = [teacher], k - 1
        else:
            keep.append(teacher)
    kept = set(keep)
    picks = sorted((i for i in front if i in kept), key=order)[:k]
    if len(picks) < k:
        chosen = set(picks)
        picks += sorted((i for i in kept if i not in chosen), key=order)[: k - len(picks)]
    return first + sorted(picks, key=order)

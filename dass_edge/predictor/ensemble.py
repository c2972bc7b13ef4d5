"""Combine several predictors' scores of one task's students into one ranking (a rank ensemble).

Scores of different predictors live on unrelated scales (an accuracy, log FLOPs, a standardized ridge
output), so they are combined per task after putting each on a common scale:

* ``rank`` — each member's scores become average ranks scaled to ``[0, 1]`` (ties share a rank);
* ``z`` — each member's scores are standardized (mean 0, sd 1) over the task's students.

The combined score is the weighted mean of the members' rescaled scores. Only the order within a task
means anything, which is all a search or a band metric reads. If the members' errors are partly
independent, the mean ranks students better than each member alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats

from dass_edge.errors import DassEdgeError

__all__ = ["COMBINE_METHODS", "combine_scores"]

#: How member scores are put on one scale before averaging.
COMBINE_METHODS = ("rank", "z")


def _rescale(scores: np.ndarray, method: str) -> np.ndarray:
    """Ranks ``0..n-1`` (``rank``; scaled by the caller) or z-scores (``z``) of one member's scores."""
    n = len(scores)
    if n == 1:
        return np.zeros(1)
    if method == "rank":
        # A NaN score (a failed proxy) ranks last, an overflow to +inf first, as everywhere in meta eval.
        s = np.where(np.isnan(scores), -np.inf, scores)
        return stats.rankdata(s, method="average") - 1.0
    finite = np.isfinite(scores)
    if not finite.all():
        raise DassEdgeError("z-score ensembles need finite member scores; use method 'rank'")
    sd = scores.std()
    return (scores - scores.mean()) / sd if sd > 1e-12 else np.zeros(n)


def combine_scores(members: Sequence[np.ndarray], weights: Sequence[float] | None = None,
                   method: str = "rank") -> np.ndarray:
    """Weighted mean of the members' per-task rescaled scores (higher = better), one value per student.

    Args:
        members: one ``(N,)`` score array per member, all for the same ``N`` students in the same order.
        weights: one non-negative weight per member (default: equal).
        method: ``rank`` (average ranks in ``[0, 1]``) or ``z`` (per-task z-scores).

    Raises:
        DassEdgeError: no members, arrays of different lengths, bad weights or an unknown method.
    """
    if method not in COMBINE_METHODS:
        raise DassEdgeError(f"unknown ensemble method {method!r}; known: {', '.join(COMBINE_METHODS)}")
    if not members:
        raise DassEdgeError("an ensemble needs at least one member")
    arrays = [np.asarray(m, dtype=float).reshape(-1) for m in members]
    if len({len(a) for a in arrays}) != 1:
        raise DassEdgeError(f"ensemble members scored different numbers of students: {[len(a) for a in arrays]}")
    w = np.ones(len(arrays)) if weights is None else np.asarray(weights, dtype=float)
    if w.shape != (len(arrays),) or not np.all(np.isfinite(w)) or (w < 0).any() or w.sum() <= 0:
        raise DassEdgeError(f"ensemble weights must be {len(arrays)} non-negative numbers with a positive sum")
    # Sum first, divide once: with equal weights, students of equal summed rank stay exactly tied.
    total = np.sum([wi * _rescale(a, method) for wi, a in zip(w, arrays)], axis=0)
    scale = w.sum() * (max(len(arrays[0]) - 1, 1) if method == "rank" else 1.0)
    return total / scale

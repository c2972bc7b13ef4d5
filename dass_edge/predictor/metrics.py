"""Ranking metrics for predictors: what matters for search is the order, and the pick.

Spearman and Kendall come from ``scipy.stats``; top-k overlap and top-1 regret are defined here
because they are specific to picking students.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats

__all__ = ["rank_metrics", "top_k_overlap", "top1_regret"]


def top_k_overlap(predicted: Sequence[float], true: Sequence[float], k: int = 5) -> float:
    """Fraction of the true top-``k`` students that are also in the predicted top-``k``."""
    p, t = np.asarray(predicted, float), np.asarray(true, float)
    k = min(k, len(t))
    return len(set(np.argsort(-p)[:k]) & set(np.argsort(-t)[:k])) / k


def top1_regret(predicted: Sequence[float], true: Sequence[float]) -> float:
    """Best true accuracy minus the true accuracy of the predicted best (0 = perfect pick)."""
    p, t = np.asarray(predicted, float), np.asarray(true, float)
    return float(t.max() - t[int(np.argmax(p))])


def rank_metrics(predicted: Sequence[float], true: Sequence[float], k: int = 5) -> dict[str, float]:
    """Spearman, Kendall tau, top-k overlap and top-1 regret of one predictor on one task."""
    p, t = np.asarray(predicted, float), np.asarray(true, float)
    if len(p) != len(t) or len(t) < 2:
        raise ValueError("need two equally long sequences with at least 2 students")
    constant = np.ptp(p) == 0
    return {
        "spearman": 0.0 if constant else float(stats.spearmanr(p, t).statistic),
        "kendall": 0.0 if constant else float(stats.kendalltau(p, t).statistic),
        "top5": top_k_overlap(p, t, k),
        "regret": top1_regret(p, t),
    }

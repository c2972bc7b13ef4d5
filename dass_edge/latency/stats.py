"""Summaries of timing samples and of predicted-vs-measured latencies (plain numpy and scipy.stats)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["fidelity_metrics", "fit_relative", "loo_predictions", "summarize_rounds"]


def summarize_rounds(rounds: Sequence[Sequence[float]]) -> dict[str, float]:
    """Per-call microseconds grouped by fresh session -> milliseconds.

    ``p50_ms`` is the median call time of an *undisturbed* session: each session's median, then the
    lower quartile across sessions. Other jobs on the machine only ever slow a session down (measured
    here: a training job turned some sessions' medians 1.2-1.7x slower for tens of seconds), so the
    middle of the session medians drifts with them while their lower quartile does not. The plain
    median of the session medians is kept as ``p50_all_sessions_ms``, their max/min as
    ``session_spread``. ``p25_ms``, ``p90_ms``, ``mean_ms`` and ``std_ms`` pool every call; ``p25_ms`` is
    what tables add up (see :mod:`dass_edge.latency.fidelity`).
    """
    if not rounds or not all(len(r) for r in rounds):
        raise ValueError("need at least one non-empty session")
    pooled = np.concatenate([np.asarray(r, dtype=float) for r in rounds]) / 1e3
    medians = [float(np.median(r)) / 1e3 for r in rounds]
    return {"p50_ms": float(np.percentile(medians, 25)), "p50_all_sessions_ms": float(np.median(medians)),
            "session_spread": max(medians) / min(medians) if min(medians) > 0 else 1.0,
            "p25_ms": float(np.percentile(pooled, 25)), "p90_ms": float(np.percentile(pooled, 90)),
            "mean_ms": float(pooled.mean()), "std_ms": float(pooled.std()), "count": int(pooled.size),
            "sessions": len(rounds)}


def fit_relative(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least squares on *relative* error: minimizes sum(((x @ beta - y) / y) ** 2).

    Relative error is what the fidelity targets measure (within +-10%), so a 0.3 ms model counts as
    much as a 3 ms one.
    """
    w = 1.0 / y
    beta, *_ = np.linalg.lstsq(x * w[:, None], np.ones_like(y), rcond=None)
    return beta


def loo_predictions(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Leave-one-out predictions of :func:`fit_relative`: each student predicted by a fit without it."""
    n = len(y)
    out = np.empty(n)
    for i in range(n):
        keep = np.arange(n) != i
        out[i] = x[i] @ fit_relative(x[keep], y[keep])
    return out


def fidelity_metrics(predicted: Sequence[float], measured: Sequence[float]) -> dict[str, float | None]:
    """Share within +-10%, RMSPE and Spearman rank correlation of predicted vs measured."""
    from scipy import stats  # imported here: loading a table for a search should not pay for scipy

    p, m = np.asarray(predicted, dtype=float), np.asarray(measured, dtype=float)
    rel = (p - m) / m
    varied = len(m) >= 3 and np.ptp(p) > 0 and np.ptp(m) > 0  # a rank correlation needs variation on both sides
    rho = stats.spearmanr(p, m).statistic if varied else float("nan")
    return {"within_10pct": float(np.mean(np.abs(rel) <= 0.10)), "rmspe": float(np.sqrt(np.mean(rel**2))),
            "max_abs_pct_error": float(np.max(np.abs(rel))) if len(rel) else None,
            "spearman": None if math.isnan(rho) else float(rho)}

"""Validate a table on whole students and fit its correction.

Summing blocks is not the whole-model latency: there is a per-call overhead (removed from every
entry, added once), operator fusion, and caches that stay warm for a block measured alone but not
inside a model whose weights exceed the core's L2. So N random students are measured end to end,
interleaved with the blocks, and a small linear model is fitted on relative error::

    median_ms ~ a * lut_ms + b * weights_mb + c

where ``median_ms`` is a student's undisturbed median (see :func:`~dass_edge.latency.stats.summarize_rounds`)
and ``lut_ms`` adds up the entries' lower quartiles. Measured here under background load (a teacher
training on the same 2 cores), lower quartiles of ~0.1 ms calls barely moved while medians drifted, and
the weights term captured most of the remaining non-additivity. Fidelity is also reported against the
plain median of all sessions (``all_sessions``) with the students' typical session spread, so a run
disturbed by other jobs shows as such. The p90 is the
corrected median times the students' median p90/p50 ratio. Stored figures are leave-one-out: each
student is predicted by a correction fitted without it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dass_edge.latency.stats import fidelity_metrics, fit_relative, loo_predictions
from dass_edge.latency.table import FEATURES

__all__ = ["correction_features", "fit_correction"]


def correction_features(n_students: int) -> list[str]:
    """Fewer students, fewer free parameters: 3 features from 10 students, scale+offset from 4, else scale."""
    if n_students >= 10:
        return list(FEATURES)
    if n_students >= 4:
        return ["lut_ms", "const"]
    return ["lut_ms"]


def _matrix(samples: Sequence[dict], features: Sequence[str]) -> np.ndarray:
    return np.array([[1.0 if f == "const" else float(s[f]) for f in features] for s in samples])


def fit_correction(samples: Sequence[dict]) -> tuple[dict, dict]:
    """Fit the correction and score it.

    Args:
        samples: per student ``lut_ms``, ``weights_mb`` (inputs) and the measured ``p50_ms``, ``p90_ms``.

    Returns:
        ``(correction, fidelity)`` ready to store in the table.
    """
    n = len(samples)
    features = correction_features(n)
    x = _matrix(samples, features)
    y50 = np.array([s["p50_ms"] for s in samples])
    y90 = np.array([s["p90_ms"] for s in samples])
    lut = np.array([s["lut_ms"] for s in samples])
    ratio = max(float(np.median(y90 / y50)), 1.0)
    correction = {"features": features, "p50": [float(c) for c in fit_relative(x, y50)], "p90_ratio": ratio,
                  "fit": "least squares on relative error", "students": n}
    loo = loo_predictions(x, y50) if n > len(features) else x @ fit_relative(x, y50)
    p90 = fidelity_metrics(loo * ratio, y90)
    fidelity = {"students": n, "method": "leave-one-out" if n > len(features) else "in-sample",
                **fidelity_metrics(loo, y50),
                "uncorrected": fidelity_metrics(lut, y50),
                "p90": {"within_10pct": p90["within_10pct"], "rmspe": p90["rmspe"]},
                "samples": [{**s, "predicted_p50_ms": float(p)}
                            for s, p in zip(samples, loo)]}
    if all("p50_all_sessions_ms" in s for s in samples):
        # Against the plain median of every session, disturbed ones included (what a busy machine shows).
        fidelity["all_sessions"] = fidelity_metrics(loo, [s["p50_all_sessions_ms"] for s in samples])
        fidelity["session_spread"] = float(np.median([s["session_spread"] for s in samples]))
    return correction, fidelity

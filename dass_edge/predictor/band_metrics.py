"""Budgeted metrics: score a predictor on the question the search asks.

``search`` never ranks a task's whole range of students; it asks which of the students that fit a
budget distills best. Across the whole range size alone explains most of the accuracy, so the
full-range Spearman mostly rewards knowing size. The metrics here ask the budgeted question:

* **band Spearman** — students sorted by cost (FLOPs or latency) and cut into bands of near-equal
  cost (equal-count bands of :data:`BAND_SIZE`; a band with fewer than :data:`MIN_BAND` students is
  dropped); Spearman inside each band, then the mean over bands;
* **budgeted regret** — for budgets at the :data:`BUDGET_QUANTILES` of the task's costs, the best true
  accuracy under the budget minus the true accuracy of the method's top pick under it (ties among
  top picks: their mean), in the labels' unit; the teacher-shaped student is excluded (it is the
  best student of every task and fits no binding budget);
* **simulated ceiling** — what a perfect predictor scores against labels carrying the seed noise
  measured from students trained with two seeds (simulated draws, so it is not limited to the few
  students that have both seeds);
* **paired bootstrap** — students resampled with replacement within each task, the same resample for
  both methods, giving a 95% interval of the difference of their mean metric over tasks.

Everything works on ``(R, n)`` arrays of ``R`` replicates internally, so bootstraps and simulations
are vectorized; the public functions take one task's ``(n,)`` arrays.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

__all__ = [
    "BAND_SIZE", "BUDGET_QUANTILES", "MIN_BAND", "BandTask", "band_spearman", "budget_regret", "budgeted_metrics",
    "cost_bands", "paired_bootstrap", "seed_noise_sd", "simulated_ceiling",
]

#: Students per cost band (equal-count bands: a task of 40 students has 5 bands of 8).
BAND_SIZE = 8
#: A band with fewer students than this is not scored (its Spearman would be noise).
MIN_BAND = 5
#: Budgets of the budgeted regret, as quantiles of the task's student costs.
BUDGET_QUANTILES = (0.2, 0.4, 0.6, 0.8)


# --- vectorized cores: rows are replicates --------------------------------------------------------------------
def _rowwise_spearman(p: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Spearman of each row pair (average ranks for ties); 0 where ``p`` is constant, NaN where ``t`` is."""
    rp = stats.rankdata(p, axis=1)
    rt = stats.rankdata(t, axis=1)
    rp -= rp.mean(1, keepdims=True)
    rt -= rt.mean(1, keepdims=True)
    sp, st = np.sqrt((rp**2).sum(1)), np.sqrt((rt**2).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (rp * rt).sum(1) / (sp * st)
    rho = np.where(sp == 0, 0.0, rho)
    return np.where(st == 0, np.nan, rho)


def _band_slices(n: int, band_size: int, min_students: int) -> list[np.ndarray]:
    """Positions (in cost order) of each band of ``n`` students; bands too small are dropped."""
    if n < min_students:
        return []
    k = max(1, n // band_size)
    return [b for b in np.array_split(np.arange(n), k) if len(b) >= min_students]


def _band_spearman_rows(p: np.ndarray, t: np.ndarray, c: np.ndarray, band_size: int, min_students: int) -> np.ndarray:
    order = np.argsort(c, axis=1, kind="stable")  # ties in cost: by index, so bands are deterministic
    ps, ts = np.take_along_axis(p, order, 1), np.take_along_axis(t, order, 1)
    slices = _band_slices(p.shape[1], band_size, min_students)
    if not slices:
        return np.full(p.shape[0], np.nan)
    rhos = np.stack([_rowwise_spearman(ps[:, s], ts[:, s]) for s in slices], axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a replicate with no scorable band: NaN, on purpose
        return np.nanmean(rhos, axis=1)


def _budget_regret_rows(p: np.ndarray, t: np.ndarray, c: np.ndarray, keep: np.ndarray,
                        quantiles: Sequence[float], use_budget: float = 0.0) -> np.ndarray:
    """``(R, len(quantiles))`` regrets; ``keep`` marks the students that may be picked (and set budgets).
    ``use_budget`` d > 0: only students costing at least (1 - d) x the budget may be picked (all that fit when
    none does); the best is still the best of all that fit."""
    cq = np.where(keep, c, np.nan)
    out = np.full((p.shape[0], len(quantiles)), np.nan)
    if not keep.any(1).all():
        return out
    budgets = np.nanquantile(cq, quantiles, axis=1).T  # (R, Q)
    for j in range(len(quantiles)):
        fit = keep & (c <= budgets[:, j : j + 1])
        best = np.where(fit, t, -np.inf).max(1)
        pickable = fit
        if use_budget > 0:
            near = fit & (c >= (1.0 - use_budget) * budgets[:, j : j + 1])
            pickable = np.where(near.any(1, keepdims=True), near, fit)
        pf = np.where(pickable, p, -np.inf)
        top = pickable & (pf == pf.max(1, keepdims=True))
        picked = np.where(top, t, 0.0).sum(1) / np.maximum(top.sum(1), 1)
        out[:, j] = np.where(fit.any(1), best - picked, np.nan)
    return out


# --- one task -------------------------------------------------------------------------------------------------
def cost_bands(costs: Sequence[float], band_size: int = BAND_SIZE, min_students: int = MIN_BAND) -> list[np.ndarray]:
    """Student indices of each band of near-equal cost (cheapest band first)."""
    c = np.asarray(costs, dtype=float)
    order = np.argsort(c, kind="stable")
    return [order[s] for s in _band_slices(len(c), band_size, min_students)]


def band_spearman(pred: Sequence[float], true: Sequence[float], costs: Sequence[float], band_size: int = BAND_SIZE,
                  min_students: int = MIN_BAND) -> float:
    """Mean over cost bands of the within-band Spearman (NaN when no band has ``min_students``)."""
    p, t, c = (np.asarray(x, dtype=float)[None] for x in (pred, true, costs))
    return float(_band_spearman_rows(p, t, c, band_size, min_students)[0])


def budget_regret(pred: Sequence[float], true: Sequence[float], costs: Sequence[float],
                  exclude: Sequence[bool] | None = None,
                  quantiles: Sequence[float] = BUDGET_QUANTILES, use_budget: float = 0.0) -> dict[str, float]:
    """Regret (in ``true``'s unit) under budgets at cost ``quantiles``: ``{"q20": ..., ..., "mean": ...}``.

    ``exclude`` marks students that are neither picked nor used to set budgets (the teacher-shaped one).
    ``use_budget`` d > 0 scores a selection policy: only students costing at least (1 - d) x the budget may be
    picked (all that fit when none does), the predictor ordering those; the best is still the best that fits.
    """
    p, t, c = (np.asarray(x, dtype=float)[None] for x in (pred, true, costs))
    keep = ~np.asarray(exclude if exclude is not None else np.zeros(c.shape[1], bool), dtype=bool)[None]
    r = _budget_regret_rows(p, t, c, keep, quantiles, use_budget)[0]
    out = {_qkey(q): float(v) for q, v in zip(quantiles, r)}
    out["mean"] = float(np.mean(r)) if np.isfinite(r).all() else math.nan
    return out


def _qkey(q: float) -> str:
    return f"q{round(q * 100)}"


def budgeted_metrics(pred: Sequence[float], true: Sequence[float], costs: Sequence[float],
                     exclude: Sequence[bool] | None = None, use_budget: float = 0.0) -> dict:
    """``band_spearman`` and ``budget_regret`` (per quantile and mean; ``use_budget``: see :func:`budget_regret`)
    of one method on one task."""
    return {"band_spearman": band_spearman(pred, true, costs),
            "budget_regret": budget_regret(pred, true, costs, exclude, use_budget=use_budget)}


def seed_noise_sd(seed_labels: Mapping[int, Sequence[float]]) -> float:
    """Per-seed noise (standard deviation) from the students trained with the first two seeds.

    With two seeds a and b of the same student, E[(a - b)^2] = 2 sd^2. NaN with fewer than
    :data:`MIN_BAND` such students.
    """
    seeds = sorted(seed_labels)
    if len(seeds) < 2:
        return math.nan
    a, b = (np.asarray(seed_labels[s], dtype=float) for s in seeds[:2])
    both = np.isfinite(a) & np.isfinite(b)
    if both.sum() < MIN_BAND:
        return math.nan
    return float(np.sqrt(np.mean((a[both] - b[both]) ** 2) / 2.0))


def simulated_ceiling(true: Sequence[float], costs: Sequence[float], noise_sd: Sequence[float] | float,
                      exclude: Sequence[bool] | None = None, draws: int = 500, seed: int = 0) -> dict:
    """Expected metrics of a perfect predictor scored against labels with simulated seed noise.

    The perfect predictor predicts ``true``; each draw scores it against ``true`` plus Gaussian noise of
    ``noise_sd`` per student (a scalar, or one per student: sd / sqrt(seeds it was trained with)). ``true``
    already holds one draw of that noise, so the ceiling is slightly optimistic (its spread is a little
    wider than the noise-free accuracies'). All NaN when the noise is unknown.
    """
    t = np.asarray(true, dtype=float)
    sd = np.broadcast_to(np.asarray(noise_sd, dtype=float), t.shape)
    c = np.asarray(costs, dtype=float)
    keep = ~np.asarray(exclude if exclude is not None else np.zeros(len(t), bool), dtype=bool)
    if not np.isfinite(sd).all():
        nan = {_qkey(q): math.nan for q in BUDGET_QUANTILES} | {"mean": math.nan}
        return {"spearman": math.nan, "band_spearman": math.nan, "budget_regret": nan}
    rng = np.random.default_rng(seed)
    noisy = t[None] + rng.standard_normal((draws, len(t))) * sd[None]
    p = np.broadcast_to(t, noisy.shape)
    cc = np.broadcast_to(c, noisy.shape)
    reg = _budget_regret_rows(p, noisy, cc, np.broadcast_to(keep, noisy.shape), BUDGET_QUANTILES).mean(0)
    return {"spearman": float(np.nanmean(_rowwise_spearman(p, noisy))),
            "band_spearman": float(np.nanmean(_band_spearman_rows(p, noisy, cc, BAND_SIZE, MIN_BAND))),
            "budget_regret": {**{_qkey(q): float(v) for q, v in zip(BUDGET_QUANTILES, reg)},
                              "mean": float(reg.mean())}}


# --- bootstrap over students within tasks ---------------------------------------------------------------------
@dataclass
class BandTask:
    """One task's inputs to the bootstrap: true labels, costs, excluded students, each method's scores, and the
    methods scored with a selection policy (``use_budget``: method -> d, see :func:`budget_regret`)."""

    true: np.ndarray
    costs: np.ndarray
    exclude: np.ndarray
    preds: dict[str, np.ndarray]
    use_budget: dict[str, float] = field(default_factory=dict)


def _task_rows(task: BandTask, idx: np.ndarray, method: str) -> dict[str, np.ndarray]:
    p, t, c = task.preds[method][idx], task.true[idx], task.costs[idx]
    keep = ~task.exclude[idx]
    return {"spearman": _rowwise_spearman(p, t),
            "band_spearman": _band_spearman_rows(p, t, c, BAND_SIZE, MIN_BAND),
            "budget_regret": _budget_regret_rows(p, t, c, keep, BUDGET_QUANTILES,
                                                 task.use_budget.get(method, 0.0)).mean(1)}


def paired_bootstrap(tasks: Sequence[BandTask], a: str, b: str, replicates: int = 1000, seed: int = 0,
                     level: float = 0.95) -> dict[str, dict[str, float]]:
    """Method ``a`` minus method ``b``: the observed mean difference over tasks and its bootstrap interval.

    Each replicate resamples every task's students with replacement (the same indices for both methods),
    computes each metric per task, averages over tasks and takes the difference. For ``budget_regret``
    lower is better, so a negative difference favours ``a``. Returns ``{metric: {"diff", "lo", "hi"}}``.
    """
    rng = np.random.default_rng(seed)
    observed: dict[str, list[float]] = {}
    boots: dict[str, list[np.ndarray]] = {}
    for task in tasks:
        n = len(task.true)
        ident = np.arange(n)[None]
        idx = rng.integers(0, n, size=(replicates, n))
        for method_sign, method in ((1.0, a), (-1.0, b)):
            obs, rep = _task_rows(task, ident, method), _task_rows(task, idx, method)
            for k in obs:
                observed.setdefault(k, []).append(method_sign * float(obs[k][0]))
                boots.setdefault(k, []).append(method_sign * rep[k])
    out = {}
    alpha = (1.0 - level) / 2.0
    for k in observed:
        # Task means of a and of b: sum of signed per-task values over 2 * tasks entries, times 2 / 2.
        obs = float(np.sum(observed[k]) / len(tasks))
        with np.errstate(invalid="ignore"):
            rep = np.sum(boots[k], axis=0) / len(tasks)
        rep = rep[np.isfinite(rep)]
        lo, hi = (np.quantile(rep, [alpha, 1.0 - alpha]) if len(rep) else (math.nan, math.nan))
        out[k] = {"diff": round(obs, 4), "lo": round(float(lo), 4), "hi": round(float(hi), 4)}
    return out

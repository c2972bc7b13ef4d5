"""Predicted-vs-true plots for the predictor evaluation: one PNG per held-out task.

The main panel shows the highlighted method (DaSS) against the true KD accuracy, with its Spearman in
the title; small side panels show the best few other methods (by Spearman), their scores min-max
rescaled to [0, 1] because proxies and size counts have no accuracy unit. Drawn on a bare Agg
``Figure`` (no pyplot state), written atomically.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from dass_edge.io import atomic_write
from dass_edge.predictor.metrics import rank_metrics

__all__ = ["plot_predicted_vs_true"]


def _spearman(pred: np.ndarray, true: np.ndarray) -> float:
    ok = np.isfinite(pred)
    if ok.sum() < 2:
        return float("nan")
    return rank_metrics(pred[ok], true[ok])["spearman"]


def _rescale(values: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1] over the finite values (a constant score sits at 0.5)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.full_like(values, np.nan)
    lo, hi = finite.min(), finite.max()
    span = hi - lo
    clipped = np.clip(values, lo, hi)
    return np.full_like(values, 0.5) if span == 0 else (clipped - lo) / span


def plot_predicted_vs_true(path: str | Path, task_name: str, true_acc: Sequence[float],
                           predictions: Mapping[str, Sequence[float]], highlight: str = "dass",
                           n_baselines: int = 3) -> Path:
    """Scatter true KD accuracy (x) against each method's prediction (y); returns the PNG path.

    Args:
        path: output ``.png`` (written atomically; parent folders are created).
        task_name: shown in the title.
        true_acc: true accuracy of each student, a fraction in [0, 1] (``MetaTask.labels``); plotted in %.
        predictions: method → one score per student (same order). The ``highlight`` method's values are
            taken as predicted accuracy fractions and plotted in %.
        highlight: the method of the main panel (default ``"dass"``); if absent, the first method is used.
        n_baselines: how many of the other methods, best Spearman first, get a small panel (default 3).

    Raises:
        ValueError: no predictions, or a prediction of a different length than ``true_acc``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    true = np.asarray(true_acc, dtype=float)
    preds = {k: np.asarray(v, dtype=float) for k, v in predictions.items()}
    if not preds:
        raise ValueError("nothing to plot: predictions is empty")
    for k, v in preds.items():
        if v.shape != true.shape:
            raise ValueError(f"method {k!r} has {v.size} predictions for {true.size} students")
    main = highlight if highlight in preds else next(iter(preds))
    rho = {k: _spearman(v, true) for k, v in preds.items()}
    others = sorted((k for k in preds if k != main), key=lambda k: -np.nan_to_num(rho[k], nan=-2.0))[:n_baselines]

    n_side = len(others)
    fig = Figure(figsize=(5.5 + 2.6 * ((n_side + 1) // 2 if n_side else 0), 5.0), layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, 2 + ((n_side + 1) // 2), width_ratios=[2, 2] + [2] * ((n_side + 1) // 2))
    ax = fig.add_subplot(grid[:, :2])
    x = 100 * true
    y = preds[main] * (100 if main == highlight else 1)
    ax.scatter(x, y, s=70, c="tab:red", edgecolors="black", linewidths=0.6, zorder=3, label=main)
    if main == highlight:
        lo, hi = np.nanmin(np.r_[x, y[np.isfinite(y)]]), np.nanmax(np.r_[x, y[np.isfinite(y)]])
        ax.plot([lo, hi], [lo, hi], ls="--", c="gray", lw=1, label="y = x")
        ax.set_ylabel(f"{main} predicted KD accuracy (%)")
    else:
        ax.set_ylabel(f"{main} score (arbitrary units)")
    ax.set_xlabel("true KD accuracy (val, %)")
    ax.set_title(f"{task_name}: {main} (Spearman {rho[main]:.3f}, n={len(true)})")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)

    for i, name in enumerate(others):
        sub = fig.add_subplot(grid[i % 2, 2 + i // 2])
        sub.scatter(x, _rescale(preds[name]), s=14, c="tab:blue", alpha=0.8)
        sub.set_title(f"{name} (Spearman {rho[name]:.3f})", fontsize=9)
        sub.set_xlabel("true KD accuracy (%)", fontsize=8)
        sub.set_ylabel("score (rescaled, 0-1)", fontsize=8)
        sub.tick_params(labelsize=7)
        sub.grid(alpha=0.3)

    return atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=110))

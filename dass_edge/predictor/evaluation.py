"""Held-out evaluation of the predictor, side by side with the baselines and the seed ceiling.

Only held-out tasks are scored (their datasets and teachers never reach meta-training); learned
baselines are fitted on the same meta-training tasks as the predictor. Regret is in accuracy
points: the best true accuracy of a task minus the true accuracy of the method's top-1 pick.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from dass_edge.errors import DassEdgeError
from dass_edge.predictor.baselines import create_baseline, seed_ceiling, task_context
from dass_edge.predictor.meta_tasks import MetaTask
from dass_edge.predictor.metrics import rank_metrics
from dass_edge.predictor.model import DaSSPredictor
from dass_edge.predictor.training import adapted_predictions, calibrated, predict_task

__all__ = ["BASELINE_METHODS", "METRICS", "ensemble_predict", "evaluate_heldout", "mean_metrics"]

BASELINE_METHODS = ("params", "flops", "synflow", "snip", "grad_norm", "jacov", "arch_only", "metad2a")
METRICS = ("spearman", "kendall", "top5", "regret")

ProgressFn = Callable[[str], None]


def ensemble_predict(models: Sequence[DaSSPredictor], task: MetaTask, adapt_steps: int | None = None,
                     k_shot: int = 0) -> np.ndarray:
    """Mean prediction (fractions) of the ensemble's members for ``task``'s students."""
    return torch.stack([predict_task(m, task, adapt_steps, k_shot) for m in models]).mean(0).numpy()


def _metrics(pred: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    m = rank_metrics(pred, labels * 100.0)
    return {k: round(float(m[k]), 4) for k in METRICS}


def mean_metrics(per_task: dict[str, dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Mean of each metric over tasks, per method (NaN entries skipped)."""
    methods = {m for t in per_task.values() for m in t}
    out: dict[str, dict[str, float]] = {}
    for method in sorted(methods):
        out[method] = {}
        for k in METRICS:
            vals = [t[method][k] for t in per_task.values() if method in t and not math.isnan(t[method][k])]
            out[method][k] = round(float(np.mean(vals)), 4) if vals else math.nan
    return out


def evaluate_heldout(models: Sequence[DaSSPredictor], tasks: Sequence[MetaTask], rows: Sequence[dict],
                     teachers_dir: str | Path, *, baselines: Sequence[str] = BASELINE_METHODS,
                     plots_dir: str | Path | None = None, k_shot: int = 0,
                     calibration: dict | None = None, progress: ProgressFn | None = None) -> dict:
    """Score every held-out task with DaSS (adapted and not), each baseline and the ceiling.

    Returns ``{"tasks": {name: {method: metrics}}, "mean": {method: metrics}, "train_tasks": [...],
    "heldout_tasks": [...], "plots": [...]}``. With the predictor's ``calibration``, ``dass`` also gets
    ``mae``: the mean absolute error of its calibrated accuracy, in points.

    Raises:
        DassEdgeError: the database names no held-out task, or no meta-training task to fit baselines on.
    """
    say = progress or (lambda msg: None)
    held = [t for t in tasks if t.heldout]
    train = [t for t in tasks if not t.heldout]
    if not held:
        raise DassEdgeError("the database names no held-out task; build it with --heldout")
    fitted = {}
    for name in baselines:
        b = create_baseline(name)
        if b.trainable:
            if not train:
                raise DassEdgeError(f"baseline {name} needs meta-training tasks and the database has none")
            say(f"fitting {name}")
            b.fit(train)
        fitted[name] = b
    per_task: dict[str, dict[str, dict[str, float]]] = {}
    plots: list[str] = []
    for task in held:
        say(f"scoring {task.name}")
        labels = task.labels.numpy().astype(float)
        raw, raw_teacher = adapted_predictions(list(models), task)  # = ensemble_predict(models, task)
        preds = {"dass": raw.numpy(), "dass_no_adapt": ensemble_predict(models, task, adapt_steps=0)}
        if k_shot > 0:
            preds[f"dass_{k_shot}shot"] = ensemble_predict(models, task, k_shot=k_shot)
        context = task_context(task.name, rows, teachers_dir) if any(
            not fitted[n].trainable and n not in ("params", "flops") for n in fitted) else None
        for name, b in fitted.items():
            preds[name] = np.asarray(b.score(task, context), dtype=float)
        result = {m: _metrics(p, labels) for m, p in preds.items()}
        shown = dict(preds)
        if calibration:
            acc = calibrated(raw, raw_teacher, task.teacher_acc, calibration).numpy()
            result["dass"]["mae"] = round(float(np.abs(acc - labels).mean() * 100.0), 3)
            shown["dass"] = acc  # same order as the raw scores; on the accuracy scale users see
        ceiling = seed_ceiling(task)
        ceiling["regret"] = ceiling["regret"] * 100.0  # seed labels are fractions
        result["ceiling"] = {k: round(float(ceiling[k]), 4) for k in METRICS}
        per_task[task.name] = result
        if plots_dir is not None:
            from dass_edge.predictor.plots import plot_predicted_vs_true

            path = Path(plots_dir) / f"{task.name}.png"
            plot_predicted_vs_true(path, task.name, labels, shown, highlight="dass")
            plots.append(str(path))
    means = mean_metrics(per_task)
    if calibration:
        means["dass"]["mae"] = round(float(np.mean([per_task[t]["dass"]["mae"] for t in per_task])), 3)
    return {"tasks": per_task, "mean": means, "heldout_tasks": [t.name for t in held],
            "train_tasks": [t.name for t in train], "plots": plots}

"""Held-out evaluation of the predictor, side by side with the baselines and the seed ceiling.

Only held-out tasks are scored (their datasets and teachers never reach meta-training); learned
baselines are fitted on the same meta-training tasks as the predictor. Regret is in accuracy
points: the best true accuracy of a task minus the true accuracy of the method's top-1 pick.

Beside the full-range metrics, every method gets the budgeted ones the search relies on
(:mod:`dass_edge.predictor.band_metrics`): band Spearman and budgeted regret over FLOPs (and over
latency when a table covering the task's teacher is given). ``ceiling`` is a perfect predictor
scored against labels with the task's simulated seed noise; ``seed_vs_seed`` is seed 1 used as a
prediction of seed 0 on the students trained with both. ``bootstrap`` holds paired 95% intervals
of DaSS minus each baseline (students resampled within tasks).

Held-out tasks are also summarized in groups: by the teacher's stem (``small_stem``, ``imagenet_stem``:
ImageNet-stem teachers at 64 px are a family of their own, and a mean over every task would hide how the
predictor does on them) and by any groups the caller names (e.g. the database each task came from); every
group has each method's mean metrics and its own bootstrap intervals of DaSS minus every baseline.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from dass_edge.errors import DassEdgeError
from dass_edge.predictor.band_metrics import (
    MIN_BAND,
    BandTask,
    band_spearman,
    budgeted_metrics,
    paired_bootstrap,
    seed_noise_sd,
    simulated_ceiling,
)
from dass_edge.predictor.baselines import create_baseline, list_baselines, seed_ceiling, task_context
from dass_edge.predictor.meta_tasks import MetaTask
from dass_edge.predictor.metrics import rank_metrics
from dass_edge.predictor.model import DaSSPredictor
from dass_edge.predictor.training import adapted_predictions, calibrated, is_hybrid, predict_task
from dass_edge.validate import nan_to_none

if TYPE_CHECKING:
    from dass_edge.latency.table import LatencyTable

__all__ = ["BASELINE_METHODS", "METRICS", "ensemble_predict", "evaluate_heldout", "mean_metrics", "pair_info",
           "sampled_bands", "task_costs"]

#: Every registered baseline, cheap ones first (the registry's order).
BASELINE_METHODS = tuple(list_baselines())
METRICS = ("spearman", "kendall", "top5", "regret")

ProgressFn = Callable[[str], None]


def ensemble_predict(models: Sequence[DaSSPredictor], task: MetaTask, adapt_steps: int | None = None,
                     k_shot: int = 0) -> np.ndarray:
    """Mean prediction (fractions) of the ensemble's members for ``task``'s students."""
    return torch.stack([predict_task(m, task, adapt_steps, k_shot) for m in models]).mean(0).numpy()


def _metrics(pred: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    m = rank_metrics(pred, labels * 100.0)
    return {k: round(float(m[k]), 4) for k in METRICS}


def _mean(values: list) -> float | dict:
    if values and isinstance(values[0], dict):
        return {k: _mean([v[k] for v in values if k in v]) for k in values[0]}
    vals = [v for v in values if not math.isnan(v)]
    return round(float(np.mean(vals)), 4) if vals else math.nan


def mean_metrics(per_task: dict[str, dict[str, dict]]) -> dict[str, dict]:
    """Mean of each metric over tasks, per method (NaN entries skipped; nested dicts averaged per key)."""
    methods = {m for t in per_task.values() for m in t}
    out: dict[str, dict] = {}
    for method in sorted(methods):
        keys = dict.fromkeys(k for t in per_task.values() if method in t for k in t[method])
        out[method] = {k: _mean([t[method][k] for t in per_task.values() if k in t.get(method, {})]) for k in keys}
    return out


def _rounded(x: float | dict) -> float | dict:
    return {k: _rounded(v) for k, v in x.items()} if isinstance(x, dict) else round(float(x), 4)


def task_costs(task: MetaTask, tables: Sequence[LatencyTable] = ()) -> dict[str, np.ndarray]:
    """Costs to band ``task``'s students by: ``flops`` always, ``latency`` (p50 ms) from the first of
    ``tables`` that holds every student of the task (none: no latency)."""
    costs = {"flops": np.asarray(task.flops, dtype=float)}
    if task.spec is None:
        return costs
    from dass_edge.space import SearchSpace

    space = SearchSpace(task.spec, fixed_last_stage=False)
    for table in tables:
        if table.resolution != task.spec.resolution:
            continue
        try:
            costs["latency"] = np.array([table.predict(space.to_spec(a))["p50_ms"] for a in task.archs])
        except DassEdgeError:  # measured for another teacher's space
            continue
        break
    return costs


def _budgeted(pred: np.ndarray, true_pts: np.ndarray, costs: dict[str, np.ndarray], exclude: np.ndarray) -> dict:
    out = {}
    for name, c in costs.items():
        suffix = "" if name == "flops" else f"_{name}"
        for k, v in budgeted_metrics(pred, true_pts, c, exclude).items():
            out[k + suffix] = _rounded(v)
    return out


def _ceiling(task: MetaTask, true_pts: np.ndarray, costs: dict[str, np.ndarray], exclude: np.ndarray) -> dict:
    """The simulated ceiling on every metric it has (per-student noise: sd / sqrt(seeds it has))."""
    sd = seed_noise_sd({s: v.numpy() for s, v in task.seed_labels.items()}) * 100.0
    n_seeds = np.sum([np.isfinite(v.numpy()) for v in task.seed_labels.values()], axis=0)
    per_student = sd / np.sqrt(np.maximum(n_seeds, 1))
    out: dict = {"noise_sd": round(sd, 4) if not math.isnan(sd) else math.nan}
    for name, c in costs.items():
        suffix = "" if name == "flops" else f"_{name}"
        sim = simulated_ceiling(true_pts, c, per_student, exclude)
        if name == "flops":
            out["spearman"] = round(sim["spearman"], 4)
        out["band_spearman" + suffix] = round(sim["band_spearman"], 4)
        out["budget_regret" + suffix] = _rounded(sim["budget_regret"])
    return out


def sampled_bands(task: MetaTask, rows: Sequence[dict]) -> list[np.ndarray] | None:
    """Student indices of each band the build sampled (rows with ``sampling.kind == "bands"``), or None
    when some student of ``task`` was not band-sampled."""
    band_of = {r["arch_key"]: (r.get("sampling") or {}).get("band") for r in rows if r["task"] == task.name
               and (r.get("sampling") or {}).get("kind") == "bands"}
    ids = [band_of.get(a.key()) for a in task.archs]
    if not ids or any(b is None for b in ids):
        return None
    ids_arr = np.asarray(ids)
    return [np.flatnonzero(ids_arr == b) for b in sorted(set(ids))]


def _sampled_band_spearman(pred: np.ndarray, true_pts: np.ndarray, costs: np.ndarray,
                           bands: list[np.ndarray]) -> float:
    """Mean Spearman inside the build's own bands of near-equal FLOPs (those with >= MIN_BAND students).

    Equal-count bands cut a band-sampled task at other places whenever a sampled band holds fewer
    students than the band size (a build in progress, a band the sampler could not fill), and then mix
    two FLOPs levels, which flatters FLOPs; this figure asks the question inside the bands as built."""
    rhos = [band_spearman(pred[b], true_pts[b], costs[b], band_size=len(b)) for b in bands if len(b) >= MIN_BAND]
    rhos = [r for r in rhos if not math.isnan(r)]
    return round(float(np.mean(rhos)), 4) if rhos else math.nan


def pair_info(task: MetaTask) -> dict:
    """What a held-out pair is: its teacher's stem, resolution and shape, and how many students it has."""
    spec = task.spec
    return {"stem": spec.stem if spec else None, "resolution": spec.resolution if spec else None,
            "teacher_depths": list(spec.depths) if spec else None,
            "teacher_widths": list(spec.widths) if spec else None, "students": len(task),
            "seeds": len(task.seed_labels)}


def _stem_groups(held: Sequence[MetaTask]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for t in held:
        out.setdefault(f"{t.spec.stem if t.spec else 'unknown'}_stem", []).append(t.name)
    return dict(sorted(out.items()))


def _group_summaries(groups: Mapping[str, Sequence[str]], per_task: dict[str, dict[str, dict]],
                     band_tasks: dict[str, BandTask], baselines: Sequence[str], bootstrap: int,
                     known: dict[frozenset, dict]) -> dict:
    """Means and bootstrap intervals per group; ``known`` maps task sets to intervals already computed."""
    out = {}
    for name, members in groups.items():
        members = [t for t in members if t in per_task]
        if not members:
            continue
        key = frozenset(members)
        if key not in known:
            mine = [band_tasks[t] for t in members]
            known[key] = {b: paired_bootstrap(mine, "dass", b, replicates=bootstrap) for b in baselines} \
                if bootstrap > 0 else {}
        out[name] = {"tasks": members, "mean": mean_metrics({t: per_task[t] for t in members}),
                     "bootstrap": known[key]}
    return out


def evaluate_heldout(models: Sequence[DaSSPredictor], tasks: Sequence[MetaTask], rows: Sequence[dict],
                     teachers_dir: str | Path, *, baselines: Sequence[str] = BASELINE_METHODS,
                     plots_dir: str | Path | None = None, k_shot: int = 0,
                     calibration: dict | None = None, progress: ProgressFn | None = None,
                     tables: Sequence[LatencyTable] = (), bootstrap: int = 1000,
                     groups: Mapping[str, Sequence[str]] | None = None,
                     fit_tasks: Sequence[str] | None = None) -> dict:
    """Score every held-out task with DaSS (adapted and not), each baseline and the ceilings.

    Returns ``{"tasks": {name: {method: metrics}}, "mean": {method: metrics}, "bootstrap": {baseline:
    {metric: {"diff", "lo", "hi"}}}, "train_tasks": [...], "heldout_tasks": [...], "plots": [...]}``.
    Every method's metrics hold the full-range ones (``spearman``, ``kendall``, ``top5``, ``regret``) and
    the budgeted ones (``band_spearman``, ``budget_regret`` per quantile and ``mean``; with a ``_latency``
    suffix too for tasks one of ``tables`` covers). With the predictor's ``calibration``, ``dass`` also
    gets ``mae``: the mean absolute error of its calibrated accuracy, in points. ``bootstrap=0`` skips
    the intervals. On a band-sampled task every method also gets ``sampled_band_spearman``: the mean
    Spearman inside the bands the build sampled that hold at least ``MIN_BAND`` students (none: no
    key). ``pairs`` says what each held-out pair is (:func:`pair_info`); ``groups`` holds, per stem
    group and per group of ``groups`` (name -> task names), ``{"tasks", "mean", "bootstrap"}``.
    ``fit_tasks`` limits the tasks learned baselines are fitted on (``train_tasks`` of the report) to
    the ones the predictor was meta-trained on, when the database holds more (a v2 database beside the
    v1 one a predictor learned from).

    Raises:
        DassEdgeError: the database names no held-out task, or no meta-training task to fit baselines on.
    """
    say = progress or (lambda msg: None)
    held = [t for t in tasks if t.heldout]
    train = [t for t in tasks if not t.heldout and (fit_tasks is None or t.name in fit_tasks)]
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
    per_task: dict[str, dict[str, dict]] = {}
    band_tasks: dict[str, BandTask] = {}
    plots: list[str] = []
    for task in held:
        say(f"scoring {task.name}")
        labels = task.labels.numpy().astype(float)
        raw, raw_teacher = adapted_predictions(list(models), task)  # = ensemble_predict(models, task)
        preds = {"dass": raw.numpy()}
        if not is_hybrid(models[0]):  # a hybrid neither adapts nor takes support students
            preds["dass_no_adapt"] = ensemble_predict(models, task, adapt_steps=0)
        if k_shot > 0:
            preds[f"dass_{k_shot}shot"] = ensemble_predict(models, task, k_shot=k_shot)
        context = task_context(task.name, rows, teachers_dir) if any(
            b.needs_context for b in fitted.values()) else None
        for name, b in fitted.items():
            preds[name] = np.asarray(b.score(task, context), dtype=float)
        costs = task_costs(task, tables)
        exclude = task.teacher_shaped().numpy()
        pts = labels * 100.0
        result = {m: {**_metrics(p, labels), **_budgeted(p, pts, costs, exclude)} for m, p in preds.items()}
        bands = sampled_bands(task, rows)
        if bands is not None:
            for m, p in preds.items():
                rho = _sampled_band_spearman(np.asarray(p, dtype=float), pts, costs["flops"], bands)
                if not math.isnan(rho):  # no sampled band of MIN_BAND students yet: no figure (a NaN would
                    result[m]["sampled_band_spearman"] = rho  # stop meta train from storing its report)
        band_tasks[task.name] = BandTask(true=pts, costs=costs["flops"], exclude=exclude, preds=preds)
        shown = dict(preds)
        if calibration:
            acc = calibrated(raw, raw_teacher, task.teacher_acc, calibration).numpy()
            result["dass"]["mae"] = round(float(np.abs(acc - labels).mean() * 100.0), 3)
            shown["dass"] = acc  # same order as the raw scores; on the accuracy scale users see
        seeds = seed_ceiling(task)
        seeds["regret"] = seeds["regret"] * 100.0  # seed labels are fractions
        result["seed_vs_seed"] = {k: round(float(seeds[k]), 4) for k in METRICS}
        result["ceiling"] = _ceiling(task, pts, costs, exclude)
        per_task[task.name] = result
        if plots_dir is not None:
            from dass_edge.predictor.plots import plot_predicted_vs_true

            path = Path(plots_dir) / f"{task.name}.png"
            plot_predicted_vs_true(path, task.name, labels, shown, highlight="dass")
            plots.append(str(path))
    means = mean_metrics(per_task)
    if calibration:
        means["dass"]["mae"] = round(float(np.mean([per_task[t]["dass"]["mae"] for t in per_task])), 3)
    intervals = {name: paired_bootstrap(list(band_tasks.values()), "dass", name, replicates=bootstrap)
                 for name in fitted} if bootstrap > 0 else {}
    summaries = _group_summaries({**_stem_groups(held), **(groups or {})}, per_task, band_tasks, list(fitted),
                                 bootstrap, {frozenset(per_task): intervals})
    # A figure a task cannot give yet (fewer than 5 students with both seeds, no full band) is None, not NaN:
    # the report is printed as JSON and stored in the predictor, and a partly built task must not block either.
    return nan_to_none({"tasks": per_task, "mean": means, "bootstrap": intervals,
                        "heldout_tasks": [t.name for t in held], "train_tasks": [t.name for t in train],
                        "plots": plots, "pairs": {t.name: pair_info(t) for t in held}, "groups": summaries})

"""Predictor model selection by cross-validation over the meta-training tasks → results/predictor_v2.md.

Held-out tasks are never used to choose anything. The 10 meta-training tasks (sorted by name) are cut
into ``--folds`` folds (task ``i`` in fold ``i % folds``); each recipe is fitted on the other folds and
scored on the fold's tasks with the budgeted metrics of :mod:`dass_edge.predictor.band_metrics` (band
Spearman over FLOPs bands, budgeted regret in points with the teacher-shaped student excluded) and the
full-range Spearman. Reported: the mean over the 10 tasks and the standard deviation of the fold means
(the fold noise any choice has to beat).

Recipes (``NAME`` or ``NAME:JSON``):

* ``flops``, ``params``, ``synflow`` — training-free scores;
* ``kl``, ``agreement``, ``cka`` — one distillation signal alone (lower KL ranks higher);
* ``ridge`` — the ridge baseline (size and shape features); ``metad2a``, ``arch_only`` — the learned baselines of
  ``meta eval``;
* ``linear`` / ``hybrid`` — :class:`HybridPredictor` on the ridge features plus extra features, linear
  part only / with its residual MLP (JSON: its constructor settings, ``task_kernel``: h for the task-weighted fit of
  :func:`task_kernel_hybrid`, and ``features``: a list of
  ``synflow`` (log synflow over the teacher's, the default), ``kl``, ``agreement``, ``cka``
  (:mod:`dass_edge.predictor.distill_signals` of the remapped student on the task's context batch));
* ``dass`` — the DaSS predictor meta-trained with the JSON's changes to :class:`TrainConfig`; it
  gives two rows, with the trained adaptation and with adaptation off at test time (``"embedding":
  "aligned"``: the student and teacher maps in the teacher's channel basis, :func:`embed_aligned`, for
  ``use`` with ``student``; ``"aligned_diff"``: the student input is its aligned maps minus the teacher's).
  Each member's fold predictions are cached (``members/`` under the cache folder), so reruns and
  ensembles train nothing twice;
* ``ensemble`` — a per-task rank (or z-score) average of member recipes (JSON: ``members``, ``weights``,
  ``method``, ``options`` per member; :func:`dass_edge.predictor.ensemble.combine_scores`);
  ``--ensemble-grid`` adds the pre-declared grid (:func:`ensemble_grid`).

Each recipe appends one line per row to ``results/predictor_v2_cv.jsonl`` (ensembles: ``predictor_v2_ensembles.jsonl``);
the fragment lists them all.
Tasks (embeddings and synflow) are cached under ``$DASS_EDGE_CV_CACHE`` (default /tmp/dass-edge-cv) after the first run.

    python benchmarks/bench_predictor_cv.py --quick flops ridge 'dass:{"target": "relative"}'
    python benchmarks/bench_predictor_cv.py --folds 5 --members 2 dass 'hybrid:{"residual_steps": 300}'
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import RESULTS, write_fragment  # noqa: E402
from dass_edge.predictor.band_metrics import budgeted_metrics  # noqa: E402
from dass_edge.predictor.hybrid import single_block_indicators  # noqa: E402
from dass_edge.predictor.metrics import rank_metrics  # noqa: E402

LOG = RESULTS / "predictor_v2_cv.jsonl"
HELD_LOG = RESULTS / "predictor_v2_heldout.jsonl"
ENS_LOG = RESULTS / "predictor_v2_ensembles.jsonl"  # ensemble rows (their members' rows are in LOG)
QUICK_STEPS = 300
SEED0 = 0  # first DaSS member's seed (--seed): reruns with other seeds measure the training-seed noise
CACHE = Path(os.environ.get("DASS_EDGE_CV_CACHE", "/tmp/dass-edge-cv"))
DB_TAG = ""  # checksum prefix of the database the tasks came from (set by load_cv_tasks)
MULTI = False  # --db given: rows carry DB_TAG, since the task set changes as the v2 build adds rows


# --- data -----------------------------------------------------------------------------------------------------
def _log_synflow(task, teacher) -> np.ndarray:
    """``(N,)`` log(synflow of each remapped student / the teacher's) — the same for every call (no data)."""
    from dass_edge.models.remap import remap
    from dass_edge.predictor.proxies import score_proxy

    x = torch.zeros(1, 3 if teacher.spec.in_chans == 3 else teacher.spec.in_chans, teacher.spec.resolution,
                    teacher.spec.resolution)
    y = torch.zeros(1, dtype=torch.long)
    ref = math.log(score_proxy("synflow", teacher, x, y))
    return np.array([math.log(max(score_proxy("synflow", remap(teacher, a, "first"), x, y), 1e-300)) - ref
                     for a in task.archs])


def load_cv_tasks(dbs: list[str] | None = None) -> list:
    """The meta-training tasks with ``synflow`` attached (cached; the databases' checksums key the cache).

    ``dbs``: ``--db`` values read as one (default: the shipped v1 database alone)."""
    from dass_edge.metadb.sources import combine_dbs, resolve_db_paths
    from dass_edge.models.checkpoint import load_checkpoint
    from dass_edge.predictor.meta_tasks import load_meta_tasks
    from dass_edge.predictor.pipeline import resolve_teachers_dir

    global DB_TAG
    combined = combine_dbs(resolve_db_paths(dbs))
    DB_TAG = combined.provenance()["sha256"][:12]
    cache = CACHE / f"cv_tasks_{DB_TAG}_probe.pt"  # _probe: tasks carry their probe profile
    if cache.is_file():
        return _with_colour_probe(torch.load(cache, weights_only=False))
    teachers = resolve_teachers_dir(combined.paths[-1], None)
    rows = combined.rows
    tasks = load_meta_tasks(rows, teachers)
    files = {r["task"]: r["teacher_file"] for r in rows}
    for t in tasks:
        teacher, _ = load_checkpoint(teachers / files[t.name])
        t.synflow = _log_synflow(t, teacher.eval())
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save(tasks, cache)
    return tasks


def _with_colour_probe(tasks: list) -> list:
    """Tasks cached before the colour probe existed get it here (a few seconds: no teacher involved)."""
    from dass_edge.data import load_task
    from dass_edge.predictor.task_probe import colour_probe_accuracy

    for t in tasks:
        if getattr(t, "colour_probe", None) is None:
            t.colour_probe = colour_probe_accuracy(load_task(t.name, resolution=t.spec.resolution))
    return tasks


def attach_signals(tasks: list) -> None:
    """Attach ``t.signals`` (``(N, 3)``: KL, top-1 agreement, linear CKA of each remapped student against the
    teacher on the task's 64-image context batch); cached like the tasks."""
    from dass_edge.io import file_sha256
    from dass_edge.metadb.store import read_rows
    from dass_edge.models.remap import remap
    from dass_edge.predictor.baselines import task_context
    from dass_edge.predictor.distill_signals import distill_signals
    from dass_edge.predictor.pipeline import default_db_path, resolve_teachers_dir

    db = default_db_path()
    cache = CACHE / f"cv_signals_{file_sha256(db)[:12]}.pt"
    if cache.is_file():
        signals = torch.load(cache, weights_only=False)
    else:
        rows = read_rows(db)
        teachers = resolve_teachers_dir(db, None)
        signals = {}
        for t in tasks:
            ctx = task_context(t.name, rows, teachers)
            x = ctx.x
            with torch.no_grad():
                ft = ctx.teacher.forward_features(x)
                out = (ft, ctx.teacher.forward_head(ft))
            signals[t.name] = np.array([distill_signals(ctx.teacher, remap(ctx.teacher, a, "first"), x, out)
                                        for a in t.archs])
        torch.save(signals, cache)
    for t in tasks:
        t.signals = signals[t.name]


def attach_aligned(tasks: list) -> None:
    """Attach ``t.aligned``: (teacher, students) embeddings in the teacher's channel basis
    (:func:`dass_edge.predictor.embeddings.embed_aligned`) on the task's usual probe; cached like the tasks."""
    from dass_edge.data import load_task
    from dass_edge.metadb.store import read_rows
    from dass_edge.models.checkpoint import load_checkpoint
    from dass_edge.models.remap import remap
    from dass_edge.predictor.embeddings import embed_aligned, probe_batch
    from dass_edge.predictor.pipeline import default_db_path, resolve_teachers_dir

    cache = CACHE / f"cv_aligned_{DB_TAG}.pt"
    if cache.is_file():
        aligned = torch.load(cache, weights_only=False)
    else:
        db = default_db_path()
        rows = {r["task"]: r for r in read_rows(db)}
        teachers = resolve_teachers_dir(db, None)
        aligned = {}
        for t in tasks:
            teacher, _ = load_checkpoint(teachers / rows[t.name]["teacher_file"])
            spec = teacher.spec
            data = load_task(t.name, resolution=rows[t.name]["resolution"])
            probe = probe_batch(data.train, spec.mean, spec.std)
            width = spec.widths[-1]
            aligned[t.name] = (embed_aligned(teacher, probe, width),
                               torch.stack([embed_aligned(remap(teacher, a), probe, width) for a in t.archs]))
            print(f"  aligned embeddings of {t.name}", flush=True)
        torch.save(aligned, cache)
    for t in tasks:
        t.aligned = aligned[t.name]


def _with_aligned(tasks: list, diff: bool = False) -> list:
    """Copies of ``tasks`` whose student and teacher embeddings are the teacher-aligned ones (``diff``: the
    student's maps minus the teacher's, what distillation has to close, as the student input)."""
    return [replace(t, teacher_embedding=t.aligned[0],
                    student_embeddings=t.aligned[1] - t.aligned[0][None] if diff else t.aligned[1]) for t in tasks]


# --- recipes: fit(train_tasks) -> {"name": scores} for each test task ---------------------------------------
FEATURES = ("synflow", "kl", "agreement", "cka")


def _bottleneck(t) -> np.ndarray:
    """``(N,)`` log(narrowest layer's width / the teacher's width of that layer's stage)."""
    return np.array([math.log(min(min(w) / tw for w, tw in zip(a.widths, t.spec.widths))) for a in t.archs])


#: Extra features computed from the architecture alone (no network evaluation), by name. ``single_stages`` is the
#: product's ``single_blocks`` setting as an extra feature, ``single_last`` its last column (session 22's exploration).
ARCH_FEATURES = {"bottleneck": _bottleneck, "single_stages": single_block_indicators,
                 "single_last": lambda t: single_block_indicators(t)[:, 3]}


def _extra_one(t, features: list[str]) -> np.ndarray:
    cols = []
    for f in features:
        if f == "synflow":
            cols.append(t.synflow)
        elif f in ARCH_FEATURES:
            cols.append(ARCH_FEATURES[f](t))
        elif f in FEATURES:
            cols.append(t.signals[:, FEATURES.index(f) - 1])
        else:
            raise SystemExit(f"error: unknown feature {f!r}; known: {', '.join((*FEATURES, *ARCH_FEATURES))}")
    return np.column_stack(cols) if cols else np.zeros((len(t), 0))


def _extra(tasks, features: list[str]) -> dict:
    return {t.name: _extra_one(t, features) for t in tasks}


def task_kernel_hybrid(h: float, **settings):
    """Session 15's candidate (``results/predictor_refit_rule.txt``): the hybrid whose ridge fit for a task weights
    each meta-training task's rows by exp(-d^2 / (2 h^2)), d the distance of the two tasks' modulators (clipped and
    centered as the hybrid does) in units of each modulator's standard deviation over the training tasks; the weights
    sum to the number of rows, so the penalty keeps its strength. h -> infinity is the plain hybrid. Bench-only:
    neither of session 15's two ruled looks adopted it (BENCHMARKS.md), so the product has no such option."""
    from dass_edge.predictor.hybrid import HybridPredictor, standardized

    class TaskKernelHybrid(HybridPredictor):
        def fit(self, tasks, extra=None):
            super().fit(tasks, extra)
            tasks = [t for t in tasks if len(t) >= 2]
            self.stats = []
            for t in tasks:
                z = (self._features(t, (extra or {}).get(t.name)) - self.mean) / self.scale
                y = standardized(t.labels.numpy().astype(float))
                self.stats.append((z.T @ z, z.T @ y, len(t), self._modulator_values(t)))
            mods = np.array([m for *_, m in self.stats])
            self.mod_sd = np.where(mods.std(0) > 1e-9, mods.std(0), 1.0)
            return self

        def score(self, task, extra=None):
            z = (self._features(task, extra) - self.mean) / self.scale
            m = self._modulator_values(task)
            d2 = np.array([np.sum(((m - mi) / self.mod_sd) ** 2) for *_, mi in self.stats])
            w = np.exp(-d2 / (2 * h * h))
            n = np.array([ni for _, _, ni, _ in self.stats], dtype=float)
            w *= n.sum() / float(w @ n)
            gram = sum(wi * g for wi, (g, *_) in zip(w, self.stats))
            rhs = sum(wi * b for wi, (_, b, *_) in zip(w, self.stats))
            return z @ np.linalg.solve(gram + self.alpha * np.eye(len(rhs)), rhs)

    if not settings.get("probe") and not settings.get("descriptors"):
        raise SystemExit("error: task_kernel needs modulators (probe or descriptors)")
    return TaskKernelHybrid(**settings)


def run_recipe(name: str, opts: dict, fit: list, test: list, members: int, quick: bool) -> dict[str, dict]:
    """``{row name: {task name: scores}}`` for the test tasks (a DaSS recipe gives two rows)."""
    if name in ("flops", "params", "synflow"):
        return {name: {t.name: np.asarray(getattr(t, name), dtype=float) for t in test}}
    if name in FEATURES[1:]:  # a distillation signal alone; lower KL = closer to the teacher
        sign = -1.0 if name == "kl" else 1.0
        return {name: {t.name: sign * t.signals[:, FEATURES.index(name) - 1] for t in test}}
    if name in ("ridge", "metad2a", "arch_only"):  # learned baselines (MetaD2A loads each task's own images)
        from dass_edge.predictor.baselines import create_baseline

        model = create_baseline(name, **opts).fit(fit)
        if not getattr(model, "needs_context", False):
            return {name: {t.name: np.asarray(model.score(t), dtype=float) for t in test}}
        from dass_edge.data import load_task
        from dass_edge.predictor.baselines import context_from_split

        # The test tasks' images as the baseline fits its training tasks' (16 px, its seed), not meta eval's
        # teacher-resolution contexts: the CV compares recipes on equal terms.
        contexts = {t.name: context_from_split(t.name, load_task(t.name, resolution=model.resolution).train, None,
                                               model.batch_size, model.seed) for t in test}
        return {name: {t.name: np.asarray(model.score(t, contexts[t.name]), dtype=float) for t in test}}
    if name in ("linear", "hybrid"):
        from dass_edge.predictor.hybrid import HybridPredictor

        settings = {"residual_steps": 0} if name == "linear" else {}
        opts = dict(opts)
        features = list(opts.pop("features", ["synflow"]))
        out: dict[str, list] = {t.name: [] for t in test}
        for seed in range(1 if name == "linear" else members):
            kernel = opts.get("task_kernel")
            args = {**settings, **{k: v for k, v in opts.items() if k != "task_kernel"}, "seed": seed}
            model = (task_kernel_hybrid(kernel, **args) if kernel else HybridPredictor(**args)).fit(
                fit, _extra(fit, features))
            for t in test:
                out[t.name].append(model.score(t, _extra_one(t, features)))
        return {name: {k: np.mean(v, 0) for k, v in out.items()}}
    if name == "dass":
        from dass_edge.predictor.training import TrainConfig, meta_train, predict_task

        change = {k: tuple(v) if k == "use" else v for k, v in opts.items() if k != "embedding"}
        if quick:
            change.setdefault("steps", QUICK_STEPS)
        key = {**change, **({"embedding": opts["embedding"]} if "embedding" in opts else {})}
        embedding = opts.get("embedding", "projected")
        if embedding in ("aligned", "aligned_diff"):  # teacher-aligned student embeddings (S input)
            fit, test = (_with_aligned(ts, embedding == "aligned_diff") for ts in (fit, test))
        elif embedding != "projected":
            raise SystemExit(f"error: unknown embedding {embedding!r}; known: projected, aligned, aligned_diff")
        on: dict[str, list] = {t.name: [] for t in test}
        off: dict[str, list] = {t.name: [] for t in test}
        for seed in range(SEED0, SEED0 + members):
            path = _member_cache(name, key, seed, fit, test)
            if path.is_file():  # this member was trained on this fold before: reuse its predictions
                preds = torch.load(path, weights_only=False)
            else:
                t0 = time.perf_counter()
                model, _ = meta_train(fit, replace(TrainConfig(), seed=seed, **change))
                preds = {t.name: (predict_task(model, t).numpy(), predict_task(model, t, adapt_steps=0).numpy())
                         for t in test}
                path.parent.mkdir(parents=True, exist_ok=True)
                torch.save(preds, path)
                print(f"  dass member seed {seed}: {time.perf_counter() - t0:.0f} s", flush=True)
            for t in test:
                on[t.name].append(preds[t.name][0])
                off[t.name].append(preds[t.name][1])
        rows = {"dass": {k: np.mean(v, 0) for k, v in on.items()}}
        if opts.get("adapt", True):
            rows["dass (adaptation off at test)"] = {k: np.mean(v, 0) for k, v in off.items()}
        return rows
    if name == "ensemble":
        return {name: _ensemble(opts, fit, test, members, quick)}
    raise SystemExit(f"error: unknown recipe {name!r}")


def _member_cache(name: str, change: dict, seed: int, fit: list, test: list) -> Path:
    """Where one trained member's fold predictions are kept: keyed by the database, the fold's tasks, the
    recipe's changes and the seed, so ensembles and reruns reuse them instead of training again."""
    key = json.dumps([DB_TAG, name, change, seed, sorted(t.name for t in fit), sorted(t.name for t in test)],
                     sort_keys=True, default=str)
    return CACHE / "members" / f"{hashlib.sha1(key.encode()).hexdigest()[:16]}.pt"


ENSEMBLE_MEMBERS = ("dass", "ridge", "synflow", "flops", "params", "linear")


def ensemble_grid() -> list[str]:
    """The ensembles declared before any was scored (``--ensemble-grid``): equal-weight rank averages of every
    subset of two or more of dass, ridge, synflow, flops, and the z-score average of dass + ridge + synflow.
    No weights are searched: with 10 tasks, a tuned weight would fit the fold noise."""
    pool = ("dass", "ridge", "synflow", "flops")
    subsets = [c for k in range(2, len(pool) + 1) for c in itertools.combinations(pool, k)]
    specs = [{"members": list(c)} for c in subsets] + [{"members": ["dass", "ridge", "synflow"], "method": "z"}]
    return ["ensemble:" + json.dumps(o) for o in specs]


def _ensemble(opts: dict, fit: list, test: list, members: int, quick: bool) -> dict[str, np.ndarray]:
    """Per-task combination (:func:`combine_scores`) of member recipes' scores. JSON: ``members`` (names),
    ``weights`` (default equal), ``method`` (``rank`` or ``z``), ``options`` ({member: its recipe options})."""
    from dass_edge.predictor.ensemble import combine_scores

    names = list(opts.get("members", []))
    unknown = [m for m in names if m not in ENSEMBLE_MEMBERS]
    if not names or unknown:
        raise SystemExit(f"error: ensemble members {unknown or names} unknown or none; known: "
                         f"{', '.join(ENSEMBLE_MEMBERS)}")
    scores = [run_recipe(m, opts.get("options", {}).get(m, {}), fit, test, members, quick)[m] for m in names]
    return {t.name: combine_scores([s[t.name] for s in scores], opts.get("weights"), opts.get("method", "rank"))
            for t in test}


def _trains_dass(name: str, opts: dict) -> bool:
    return name == "dass" or (name == "ensemble" and "dass" in opts.get("members", []))


def task_metrics(scores: np.ndarray, task) -> dict[str, float]:
    pts = task.labels.numpy().astype(float) * 100.0
    b = budgeted_metrics(scores, pts, np.asarray(task.flops, dtype=float), task.teacher_shaped().numpy())
    return {"spearman": rank_metrics(scores, pts)["spearman"], "band_spearman": b["band_spearman"],
            "regret": b["budget_regret"]["mean"]}


def cross_validate(tasks: list, name: str, opts: dict, folds: int, members: int, quick: bool) -> list[dict]:
    train = sorted((t for t in tasks if not t.heldout), key=lambda t: t.name)
    folds = min(folds, len(train))
    per: dict[str, dict[str, dict]] = {}
    fold_of: dict[str, int] = {}
    for f in range(folds):
        test = train[f::folds]
        fit = [t for t in train if t not in test]
        for row, by_task in run_recipe(name, opts, fit, test, members, quick).items():
            for t in test:
                per.setdefault(row, {})[t.name] = task_metrics(by_task[t.name], t)
                fold_of[t.name] = f
    out = []
    for row, by_task in per.items():
        rec = {"recipe": row, "options": opts, "folds": folds, "members": members, "quick": quick,
               "tasks": len(train), **({"db": DB_TAG} if MULTI else {}),
               **({"seed": SEED0} if SEED0 and _trains_dass(name, opts) else {}),
               "per_task": {k: {m: round(v, 4) for m, v in d.items()} for k, d in sorted(by_task.items())}}
        for m in ("band_spearman", "regret", "spearman"):
            vals = [d[m] for d in by_task.values()]
            fold_means = [np.mean([by_task[k][m] for k in by_task if fold_of[k] == f]) for f in range(folds)]
            rec[m] = round(float(np.mean(vals)), 4)
            rec[m + "_fold_sd"] = round(float(np.std(fold_means, ddof=1)), 4) if folds > 1 else math.nan
        out.append(rec)
    return out


def heldout(tasks: list, name: str, opts: dict, members: int, targets: list[str] | None = None) -> list[dict]:
    """Fit on all meta-training tasks, score the held-out tasks: reported only, never used to choose.

    ``targets``: score these meta-training tasks instead, fitted on the other meta-training tasks (a rule's look
    at tasks that joined the database after its candidate was chosen)."""
    if targets:
        unknown = sorted(set(targets) - {t.name for t in tasks if not t.heldout})
        if unknown:
            raise SystemExit(f"error: --new-tasks {', '.join(unknown)}: not meta-training tasks of this database")
    new = set(targets or ())
    train = sorted((t for t in tasks if not t.heldout and t.name not in new), key=lambda t: t.name)
    test = sorted((t for t in tasks if (t.name in new if new else t.heldout)), key=lambda t: t.name)
    out = []
    for row, by_task in run_recipe(name, opts, train, test, members, False).items():
        per = {t.name: task_metrics(by_task[t.name], t) for t in test}
        rec = {"recipe": row, "options": opts, "members": members,
               "per_task": {k: {m: round(v, 4) for m, v in d.items()} for k, d in per.items()}}
        rec |= {m: round(float(np.mean([d[m] for d in per.values()])), 4)
                for m in ("band_spearman", "regret", "spearman")}
        out.append(rec)
    return out


def _held_body(recs: list[dict]) -> str:
    if not recs:
        return ""
    names = sorted(recs[0]["per_task"])
    lines = ["| recipe | options | " + " | ".join(f"band rho {n}" for n in names)
             + " | band rho mean | budget regret, pts | full rho |", "|---|---|" + "---|" * (len(names) + 3)]
    for r in recs:
        lines.append(f"| {r['recipe']} | `{json.dumps(r['options'])}` | "
                     + " | ".join(f"{r['per_task'][n]['band_spearman']:.3f}" for n in names)
                     + f" | {r['band_spearman']:.3f} | {r['regret']:.2f} | {r['spearman']:.3f} |")
    return ("\n### Held-out tasks (reported only; they chose nothing)\n\nEach recipe fitted on all 10 "
            "meta-training tasks (`--heldout`), scored on the 3 held-out tasks with the same metrics. The shipped "
            "DaSS predictor's held-out figures are in the band-metrics section above.\n\n" + "\n".join(lines) + "\n")


# --- report ---------------------------------------------------------------------------------------------------
def paired_delta(rec: dict, ref: dict, metric: str) -> tuple[float, float] | None:
    """Mean over tasks of ``rec`` minus ``ref`` on ``metric``, and the standard deviation of the per-fold
    mean differences (same folds, same tasks: the paired noise a choice must beat). None if not comparable."""
    if rec["folds"] != ref["folds"] or set(rec["per_task"]) != set(ref["per_task"]):
        return None
    names = sorted(rec["per_task"])
    diffs = np.array([rec["per_task"][k][metric] - ref["per_task"][k][metric] for k in names])
    folds = rec["folds"]
    fold_means = [diffs[f::folds].mean() for f in range(folds)]  # tasks sorted by name: task i in fold i % folds
    return float(diffs.mean()), float(np.std(fold_means, ddof=1)) if folds > 1 else math.nan


def task_bootstrap(rec: dict, ref: dict, metric: str, n: int = 10000, seed: int = 0) -> tuple[float, float, float]:
    """Mean paired per-task difference ``rec - ref`` of ``metric`` and its 95% bootstrap interval over tasks
    (the tasks both rows scored)."""
    from scipy.stats import bootstrap

    common = sorted(set(rec["per_task"]) & set(ref["per_task"]))
    d = np.array([rec["per_task"][k][metric] - ref["per_task"][k][metric] for k in common])
    ci = bootstrap((d,), np.mean, n_resamples=n, method="percentile", random_state=seed).confidence_interval
    return float(d.mean()), float(ci.low), float(ci.high)


def _is_shipped(r: dict) -> bool:
    return r["recipe"] == "dass" and not r["options"] and not r.get("quick") and not r.get("seed")


def _body(recs: list[dict]) -> str:
    # The reference of a row is the shipped recipe's row on the same task set (database snapshot).
    refs = {}
    for r in recs:
        if _is_shipped(r):
            refs.setdefault(r.get("db"), r)
    snapshots = sorted({r.get("db") for r in recs}, key=lambda d: [x.get("db") for x in recs].index(d))
    head = ("| recipe | options | tasks | folds × members | band rho (fold sd) | budget regret, pts (fold sd) "
            "| full rho (fold sd) | Δ band rho vs DaSS network (fold sd) | Δ regret vs DaSS network (fold sd) |")
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]
    for r in recs:
        ref = refs.get(r.get("db"))
        q = (" quick" if r.get("quick") else "") + (f", seed {r['seed']}" if r.get("seed") else "")
        deltas = []
        for m, spec in (("band_spearman", "+.3f"), ("regret", "+.2f")):
            d = paired_delta(r, ref, m) if ref is not None and r is not ref else None
            deltas.append(f"{d[0]:{spec}} ({abs(d[1]):{spec[1:]}})" if d else "")
        snap = (f" (set {snapshots.index(r.get('db')) + 1}, db {str(r.get('db'))[:8]})" if len(snapshots) > 1
                else "")
        lines.append(f"| {r['recipe']} | `{json.dumps(r['options'])}` | {r.get('tasks', 10)}{snap} "
                     f"| {r['folds']} × {r['members']}{q} "
                     f"| {r['band_spearman']:.3f} ({r['band_spearman_fold_sd']:.3f}) "
                     f"| {r['regret']:.2f} ({r['regret_fold_sd']:.2f}) "
                     f"| {r['spearman']:.3f} ({r['spearman_fold_sd']:.3f}) | {deltas[0]} | {deltas[1]} |")
    sets = (" Rows of different task sets (database snapshots, `set N` in the tasks column, numbered in the order "
            "this table met them, with the first characters of the snapshot's checksum: the notes' set numbers "
            "count every snapshot, so they differ) are not comparable with each other; each Δ pairs a row with the "
            "DaSS network row of its own set."
            if len(snapshots) > 1 else "")
    return ("Cross-validation over the meta-training tasks only (k folds of tasks, task i of the name-sorted "
            "list in fold i mod k; fit on the other folds, score the fold); the held-out tasks play no part. Means "
            "over the tasks; in brackets the standard deviation of the fold means. Band rho: Spearman inside "
            "FLOPs bands of 8 students; budget regret: best true accuracy under the 20/40/60/80% FLOPs budgets "
            "minus that of the recipe's pick (teacher-shaped student excluded). Δ: paired difference to the "
            "DaSS network recipe (`dass` with no changes, the v1 shipped predictor) on the same tasks, with the "
            "standard deviation of its fold means. `dass` rows meta-train the DaSS network (600 steps, `quick`: "
            "300) with the options' changes to `TrainConfig`; each gives a second row with the adaptation switched "
            "off at test time. `linear` rows are the hybrid predictor's linear part (`probe`: modulated by the "
            "task's probe profile, the shipped v2 recipe)." + sets + "\n\n" + "\n".join(lines) + "\n")


def _member_row(recs: list[dict], ens: dict, name: str) -> dict | None:
    """The latest CV row of ensemble ``ens``'s member ``name`` on the same folds (DaSS: same members and seed)."""
    opts = ens["options"].get("options", {}).get(name, {})
    found = [r for r in recs if r["recipe"] == name and r["options"] == opts and r["folds"] == ens["folds"]
             and not r.get("quick") and (name != "dass" or (r["members"] == ens["members"]
                                                           and r.get("seed", 0) == ens.get("seed", 0)))]
    return found[-1] if found else None


def _ensemble_body(recs: list[dict]) -> str:
    latest = {json.dumps([r["options"], r["folds"], r["members"], r.get("seed", 0)], sort_keys=True): r
              for r in recs if r["recipe"] == "ensemble" and not r.get("quick")}  # reruns: the last one
    # Grouped by member set (the grid's order), then by DaSS seeds.
    order = {json.dumps(json.loads(g.partition(":")[2]), sort_keys=True): i for i, g in enumerate(ensemble_grid())}
    ens = sorted(latest.values(), key=lambda r: (order.get(json.dumps(r["options"], sort_keys=True), len(order)),
                                                 r.get("seed", 0)))
    if not ens:
        return ""
    lines = ["| members | method | DaSS members, seeds | band rho (fold sd) | budget regret, pts (fold sd) "
             "| full rho (fold sd) | Δ band rho vs DaSS (fold sd) | Δ regret vs DaSS (fold sd) | best member "
             "| Δ band rho vs best member (fold sd) | Δ regret vs best member (fold sd) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]

    def delta(rec: dict, ref: dict | None) -> list[str]:
        out = []
        for m, spec in (("band_spearman", "+.3f"), ("regret", "+.2f")):
            d = paired_delta(rec, ref, m) if ref is not None else None
            out.append(f"{d[0]:{spec}} ({abs(d[1]):{spec[1:]}})" if d else "")
        return out

    for r in ens:
        names = r["options"]["members"]
        rows = {n: _member_row(recs, r, n) for n in names}
        dass = _member_row(recs, r, "dass") if "dass" in names else _member_row(recs, {**r, "seed": 0}, "dass")
        known = {n: x for n, x in rows.items() if x is not None}
        best = max(known, key=lambda n: known[n]["band_spearman"]) if len(known) == len(names) else None
        seeds = (f"{r['members']}, {r.get('seed', 0)}..{r.get('seed', 0) + r['members'] - 1}" if "dass" in names
                 else "-")
        lines.append(f"| {' + '.join(names)} | {r['options'].get('method', 'rank')} | {seeds} "
                     f"| {r['band_spearman']:.3f} ({r['band_spearman_fold_sd']:.3f}) "
                     f"| {r['regret']:.2f} ({r['regret_fold_sd']:.2f}) "
                     f"| {r['spearman']:.3f} ({r['spearman_fold_sd']:.3f}) "
                     f"| {' | '.join(delta(r, dass))} | {best or '?'} "
                     f"| {' | '.join(delta(r, known[best] if best else None))} |")
    return ("\n### Rank ensembles (`ensemble` recipe; the grid of `--ensemble-grid`, declared before scoring)\n\n"
            "Per task, each member's scores become ranks in [0, 1] (`rank`) or z-scores (`z`) and are averaged "
            "with equal weights (`dass_edge.predictor.ensemble.combine_scores`). Same folds as above; each DaSS "
            "member's fold predictions are cached, so an ensemble reuses the DaSS rows' trained members. Δ vs DaSS: "
            "paired difference to the DaSS recipe with the same members and seeds (for ensembles without DaSS: "
            "the DaSS row of the first seeds); best member: the member with the highest CV band rho.\n\n"
            + "\n".join(lines) + "\n")


def _subset(task, keep: np.ndarray):
    """``task`` restricted to the students ``keep`` (labels, sizes and codes; what :func:`task_metrics` reads)."""
    import copy

    sub = copy.copy(task)
    sub.archs, sub.labels, sub.codes = [task.archs[i] for i in keep], task.labels[keep], task.codes[keep]
    sub.flops, sub.params = [task.flops[i] for i in keep], [task.params[i] for i in keep]
    return sub


def kshot_curve(tasks: list, ks=(5, 10, 20), strengths=(3.0, 10.0, 30.0), seeds: int = 3) -> list[dict]:
    """K-shot adaptation of the shipped hybrid recipe, leave-one-task-out over the meta-training tasks: fitted
    on the other tasks, adapted to K random students of the left-out one (``seeds`` draws), scored on its
    *other* students, paired with the unadapted model on the same students. Chooses the prior strength."""
    from dass_edge.predictor.hybrid import HybridPredictor
    from dass_edge.predictor.pipeline import HYBRID_DEFAULTS

    train = sorted((t for t in tasks if not t.heldout), key=lambda t: t.name)
    acc: dict[tuple, list] = {}
    for t in train:
        model = HybridPredictor(**HYBRID_DEFAULTS).fit([u for u in train if u is not t])
        for k in ks:
            if len(t) - k < 16:  # too few students left to score inside bands
                continue
            for seed in range(seeds):
                idx = torch.randperm(len(t), generator=torch.Generator().manual_seed(seed))[:k].numpy()
                keep = np.setdiff1d(np.arange(len(t)), idx)
                sub = _subset(t, keep)
                acc.setdefault((k, 0.0), []).append(task_metrics(model.score(t)[keep], sub))
                for lam in strengths:
                    acc.setdefault((k, lam), []).append(task_metrics(model.adapted(t, idx, lam).score(t)[keep], sub))
    recipe = {k: list(v) if isinstance(v, tuple) else v for k, v in HYBRID_DEFAULTS.items()}
    return [{"k": k, "strength": lam, "tasks": len(v) // seeds, "seeds": seeds, "db": DB_TAG, "recipe": recipe,
             **{m: round(float(np.mean([x[m] for x in v])), 4) for m in ("band_spearman", "regret", "spearman")}}
            for (k, lam), v in sorted(acc.items())]


def _kshot_body(recs: list[dict]) -> str:
    if not recs:
        return ""
    lines = ["", "### K-shot adaptation of the hybrid (leave-one-task-out; scored on the students not shown)", "",
             "Tasks with fewer than K + 16 students sit out that K."
             + (f" Recipe: the shipped hybrid at the time of the run, `{json.dumps(recs[0]['recipe'])}`; "
                f"{recs[0]['seeds']} draws per task and K; db `{recs[0]['db'][:8]}`." if "recipe" in recs[0] else ""),
             "",
             "| K | prior strength | tasks | band rho | budget regret (pts) | full rho |", "|---|---|---|---|---|---|"]
    for r in recs:
        lines.append(f"| {r['k']} | {'none (K = 0 on the same students)' if r['strength'] == 0 else r['strength']} | "
                     f"{r['tasks']} | {r['band_spearman']:.3f} | {r['regret']:.2f} | {r['spearman']:.3f} |")
    return "\n".join(lines) + "\n"


SAME_SHAPE_TASKS = ("glyph-armenian", "glyph-cyrillic-lower", "glyph-cyrillic-upper", "glyph-georgian",
                    "glyph-greek-lower", "glyph-hebrew", "glyph-latin-upper", "textures")  # 2-2-2-2, 16-128 wide


def distinct_picks(keys: list[str], students: int = 3000) -> dict:
    """Does a scorer pick different students for different data? The v1 teachers of one shape (SAME_SHAPE_TASKS),
    one pool of random students, budgets at its 35% and 65% FLOPs quantiles: the top pick per task and budget
    (``dass`` is the shipped predictor, a path another predictor file, any other key a baseline)."""
    from dass_edge.data import load_task
    from dass_edge.models.checkpoint import load_checkpoint
    from dass_edge.predictor.search_scorers import load_search_scorer
    from dass_edge.space import SearchSpace, spec_flops

    root = Path(__file__).resolve().parents[1] / "metadb" / "teachers"
    picks: dict[str, dict[str, list[str]]] = {k: {} for k in keys}
    pool = flops = budgets = None
    for task in SAME_SHAPE_TASKS:
        teacher, meta = load_checkpoint(root / f"{task}.safetensors")
        data = load_task(task, resolution=teacher.spec.resolution)
        space = SearchSpace(teacher.spec)
        if pool is None:
            pool = space.sample_many(students, seed=3)
            flops = np.array([spec_flops(space.to_spec(a)) for a in pool])
            budgets = np.quantile(flops, [0.35, 0.65])
        for key in keys:
            scorer = load_search_scorer(None if key == "dass" else key, teacher.eval(), data, teacher_meta=meta)
            scores = np.concatenate([scorer(pool[i:i + 500]) for i in range(0, len(pool), 500)])
            for q, b in zip(("35%", "65%"), budgets):
                ok = np.where(flops <= b)[0]
                picks[key].setdefault(q, []).append(pool[ok[np.argmax(scores[ok])]].key())
    return {k: {q: {"distinct": len(set(v)), "tasks": len(v), "picks": v} for q, v in by.items()}
            for k, by in picks.items()}


def scorer_speed(keys: list[str], students: int = 400) -> None:
    """Students/s of search-path scorers side by side (demo teacher and task, 32 px, this process's threads):
    ``dass`` is the shipped predictor, a path another predictor file, any other key a registered baseline
    (``load_search_scorer``). The set-up (adaptation, probe profile, baseline fit) is timed on its own."""
    from dass_edge.data import load_task
    from dass_edge.models.checkpoint import load_checkpoint
    from dass_edge.predictor.search_scorers import load_search_scorer
    from dass_edge.resources import asset_path
    from dass_edge.space import SearchSpace

    teacher, meta = load_checkpoint(asset_path("demo_teacher.safetensors"))
    data = load_task(meta["task"], resolution=teacher.spec.resolution)
    archs = SearchSpace(teacher.spec).sample_many(students, seed=7)
    print(f"load average {os.getloadavg()[0]:.1f}; demo teacher, {teacher.spec.resolution} px", flush=True)
    for key in keys:
        t0 = time.perf_counter()
        scorer = load_search_scorer(None if key == "dass" else key, teacher.eval(), data, teacher_meta=meta)
        setup = time.perf_counter() - t0
        n = students if key != "synflow" else students // 10  # synflow: a few students/s, 40 are enough
        t0 = time.perf_counter()
        for i in range(0, n, 50):
            scorer(archs[i:min(i + 50, n)])
        print(f"{key}: {n / (time.perf_counter() - t0):.1f} students/s (set-up {setup:.1f} s)", flush=True)


def descriptor_check(tasks: list, recipe: str, target: str, descriptor: str, value: float,
                     left_out: tuple[str, ...] = ()) -> dict:
    """A linear hybrid recipe fitted once on the meta-training tasks other than ``target`` (and ``left_out``, e.g.
    tasks that joined the database with it) scores ``target`` twice: as it is, and with teacher descriptor
    ``descriptor`` read as ``value`` for ``target`` alone (session 16: does the ImageNet-stem glyph task rank better
    read as a small-stem one, i.e. did the stem descriptor learn the emoji domain it was confounded with?).
    Information only."""
    from dass_edge.predictor import hybrid

    name, _, text = recipe.partition(":")
    opts = json.loads(text) if text else {}
    if name != "linear" or descriptor not in opts.get("descriptors", ()) or "task_kernel" in opts:
        raise SystemExit(f"error: --descriptor-check needs a plain linear recipe with {descriptor!r} among its "
                         "descriptors")
    task = next((t for t in tasks if t.name == target and not t.heldout), None)
    if task is None:
        raise SystemExit(f"error: --descriptor-check: {target} is not a meta-training task of this database")
    train = sorted((t for t in tasks if not t.heldout and t.name != target and t.name not in left_out),
                   key=lambda t: t.name)
    features = list(opts.pop("features", ["synflow"]))
    model = hybrid.HybridPredictor(**{"residual_steps": 0, **opts}).fit(train, _extra(train, features))
    extra = _extra_one(task, features)
    out = {"recipe": recipe, "task": target, "train_tasks": len(train),
           "as_is": task_metrics(model.score(task, extra), task)}
    original = hybrid.TEACHER_DESCRIPTORS[descriptor]
    hybrid.TEACHER_DESCRIPTORS[descriptor] = lambda _task: float(value)  # read at scoring time only
    try:
        out[f"{descriptor}={value:g}"] = task_metrics(model.score(task, extra), task)
    finally:
        hybrid.TEACHER_DESCRIPTORS[descriptor] = original
    return out


def latency_costs(task) -> np.ndarray | None:
    """Each student's p50 latency from this machine's CPU table for the task's teacher (None: no table here;
    build one with ``dass-edge profile --device cpu --resolution R --teacher T``)."""
    from dass_edge.errors import DassEdgeError
    from dass_edge.latency import load_table
    from dass_edge.space import SearchSpace

    try:
        table = load_table("cpu", task.spec.resolution, task.spec)
    except DassEdgeError:
        return None
    space = SearchSpace(task.spec, fixed_last_stage=False)
    return np.array([table.predict(space.to_spec(a))["p50_ms"] for a in task.archs])


def latency_bands(tasks: list, recipes: list[str], folds: int) -> list[dict]:
    """Cross-validated band rho and budget regret with FLOPs as the cost and with latency as the cost.

    The search compares students at equal latency, where a student can trade FLOPs for parameters; the
    database's bands are equal FLOPs. A recipe can rank well inside FLOPs bands and still buy the wrong trade
    at equal latency: this puts both side by side (tasks without a CPU table here sit out)."""
    every = sorted((t for t in tasks if not t.heldout), key=lambda t: t.name)
    lat = {t.name: latency_costs(t) for t in every}
    missing = [n for n, c in lat.items() if c is None]
    train = [t for t in every if lat[t.name] is not None]
    folds = min(folds, len(train))
    out = []
    scored: dict[str, dict[str, np.ndarray]] = {}  # recipe spec -> task -> cross-validated scores
    policy: dict[str, float] = {}  # recipe spec -> its use_budget (a selection policy, not a model option)
    for spec in recipes:
        name, _, text = spec.partition(":")
        opts = json.loads(text) if text else {}
        use_budget = policy[spec] = float(opts.pop("use_budget", 0.0))
        per: dict[str, dict[str, float]] = {}
        scored[spec] = {}
        for f in range(folds):
            test = train[f::folds]
            fit = [t for t in every if t not in test]  # tasks without a table still teach
            scores = next(iter(run_recipe(name, opts, fit, test, 1, False).values()))
            scored[spec] |= {t.name: np.asarray(scores[t.name], dtype=float) for t in test}
            for t in test:
                pts = t.labels.numpy().astype(float) * 100.0
                excl = t.teacher_shaped().numpy()
                flop = budgeted_metrics(scores[t.name], pts, np.asarray(t.flops, dtype=float), excl, use_budget)
                late = budgeted_metrics(scores[t.name], pts, lat[t.name], excl, use_budget)
                per[t.name] = {"full_rho": rank_metrics(scores[t.name], pts)["spearman"],
                               "flops_band": flop["band_spearman"], "flops_regret": flop["budget_regret"]["mean"],
                               "latency_band": late["band_spearman"], "latency_regret": late["budget_regret"]["mean"]}
        if use_budget:
            opts["use_budget"] = use_budget
        rec = {"recipe": name, "options": opts, "db": DB_TAG, "tasks": len(per), "without_table": missing,
               **{m: round(float(np.nanmean([d[m] for d in per.values()])), 4) for m in next(iter(per.values()))},
               "per_task": {k: {m: round(v, 4) for m, v in d.items()} for k, d in sorted(per.items())}}
        out.append(rec)
        print({k: v for k, v in rec.items() if k != "per_task"}, flush=True)
    _bootstrap_against(out, recipes, scored, policy, train, lat)
    return out


def _bootstrap_against(recs: list[dict], recipes: list[str], scored: dict, policy: dict, train: list,
                       lat: dict) -> None:
    """Each recipe minus FLOPs and minus the first ``linear`` recipe (the reference, e.g. the shipped one) under
    latency budgets and bands: the paired bootstrap of :func:`paired_bootstrap` (students resampled within
    tasks, the same resample for both), stored as ``rec["vs"][other]``."""
    from dass_edge.predictor.band_metrics import BandTask, paired_bootstrap

    refs = [s for s in recipes if s == "flops"] + [s for s in recipes if s.startswith("linear")][:1]
    tasks = [BandTask(true=t.labels.numpy().astype(float) * 100.0, costs=lat[t.name],
                      exclude=t.teacher_shaped().numpy().astype(bool),
                      preds={s: scored[s][t.name] for s in recipes}, use_budget=policy) for t in train]
    for rec, spec in zip(recs, recipes):
        rec["vs"] = {}
        for ref in refs:
            if ref != spec:
                boot = paired_bootstrap(tasks, spec, ref)
                rec["vs"][ref] = {k: boot[k] for k in ("band_spearman", "budget_regret")}


def _latency_body(recs: list[dict]) -> str:
    lines = ["| recipe | options | tasks | band rho, FLOPs bands | band rho, latency bands | regret, FLOPs budgets "
             "| regret, latency budgets | full rho |", "|---|---|---|---|---|---|---|---|"]
    for r in recs:
        full = f"{r['full_rho']:.3f}" if "full_rho" in r else "-"
        lines.append(f"| {r['recipe']} | `{json.dumps(r['options'])}` | {r['tasks']} | {r['flops_band']:.3f} | "
                     f"{r['latency_band']:.3f} | {r['flops_regret']:.2f} | {r['latency_regret']:.2f} | {full} |")
    boots = []
    for r in recs:
        for ref, d in r.get("vs", {}).items():
            reg, band = d["budget_regret"], d["band_spearman"]
            boots.append(f"| {r['recipe']} `{json.dumps(r['options'])}` | {ref.split(':')[0]}"
                         f"{' (reference)' if ref.startswith('linear') else ''} | {reg['diff']:+.2f} "
                         f"[{reg['lo']:+.2f}, {reg['hi']:+.2f}] | {band['diff']:+.3f} [{band['lo']:+.3f}, "
                         f"{band['hi']:+.3f}] |")
    if boots:
        lines += ["", "Paired bootstrap under latency costs (students resampled within tasks, the same resample for "
                  "both; 95% intervals; regret: negative favours the row):", "",
                  "| recipe | minus | latency regret | latency band rho |", "|---|---|---|---|", *boots]
    missing = sorted({n for r in recs for n in r["without_table"]})
    note = (f"\nTasks without a CPU table on this machine sat out: {', '.join(missing)}.\n" if missing else "")
    return ("Cross-validation folds as above (5 folds of the meta-training tasks). Costs: FLOPs, or each student's "
            "p50 latency predicted by this machine's CPU table for its teacher (`dass-edge profile --device cpu "
            "--resolution R --teacher T`, measured while the database build ran). Bands of 8 students by cost; "
            "regret under budgets at the 20-80% cost quantiles.\n\n" + "\n".join(lines) + "\n" + note)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipes", nargs="*", help="NAME or NAME:JSON (see above)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--members", type=int, default=1, help="seeds per DaSS / hybrid recipe (ensemble mean)")
    parser.add_argument("--quick", action="store_true", help="2 folds, 300 DaSS steps")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first DaSS member")
    parser.add_argument("--heldout", action="store_true",
                        help="fit on all meta-training tasks and report the held-out tasks instead (chooses nothing)")
    parser.add_argument("--ensemble-grid", action="store_true",
                        help="add the pre-declared ensembles (see ensemble_grid)")
    parser.add_argument("--db", action="append", metavar="DB",
                        help="databases read as one, like meta train --db (default: the shipped v1 one); rows go to "
                             "results/predictor_v2_cv_multi.jsonl, a table of their own")
    parser.add_argument("--kshot", action="store_true",
                        help="also simulate K-shot adaptation of the hybrid (results/predictor_v2_kshot.jsonl)")
    parser.add_argument("--distinct-picks", nargs="+", metavar="KEY",
                        help="only count distinct top picks over same-shape teachers of different tasks")
    parser.add_argument("--latency-bands", action="store_true",
                        help="only compare the recipes' cross-validated metrics with FLOPs and with latency as the "
                             "cost (needs this machine's CPU tables for the teachers)")
    parser.add_argument("--new-tasks", default=None, metavar="A,B",
                        help="with --heldout: score these meta-training tasks, fitted on the other meta-training "
                             "tasks (rows go to results/predictor_v2_newtasks.jsonl)")
    parser.add_argument("--bootstrap-vs", type=int, default=None, metavar="I",
                        help="after the runs, print each new row's paired task-bootstrap difference (regret, band "
                             "rho) to the I-th recipe given (0-based)")
    parser.add_argument("--scorer-speed", nargs="+", metavar="KEY",
                        help="only measure search-path scoring speed of these keys (dass = shipped), side by side")
    parser.add_argument("--descriptor-check", nargs=3, metavar=("TASK", "DESCRIPTOR", "VALUE"),
                        help="fit the first recipe on the other meta-training tasks, score TASK as it is and with "
                             "teacher descriptor DESCRIPTOR read as VALUE (e.g. glyph-braille stem 0; --new-tasks: "
                             "also leave these out of the fit); prints JSON")
    args = parser.parse_args()
    if args.descriptor_check:
        if len(args.recipes) != 1:
            parser.error("--descriptor-check takes one recipe")
        torch.set_num_threads(1)
        target, descriptor, value = args.descriptor_check
        left_out = tuple(args.new_tasks.split(",")) if args.new_tasks else ()
        print(json.dumps(descriptor_check(load_cv_tasks(args.db), args.recipes[0], target, descriptor, float(value),
                                          left_out), indent=1))
        return
    if args.new_tasks and not args.heldout:
        parser.error("--new-tasks needs --heldout (it says which tasks that look scores)")
    if args.distinct_picks:
        torch.set_num_threads(1)
        out = distinct_picks(args.distinct_picks)
        for key, by in out.items():
            print(key, {q: f"{v['distinct']} distinct of {v['tasks']}" for q, v in by.items()}, flush=True)
        (RESULTS / "predictor_distinct_picks.json").write_text(json.dumps(out, indent=1) + "\n")
        return
    if args.scorer_speed:
        torch.set_num_threads(1)
        scorer_speed(args.scorer_speed)
        return
    if args.latency_bands:
        torch.set_num_threads(1)
        recs = latency_bands(load_cv_tasks(args.db), args.recipes, args.folds)
        (RESULTS / "predictor_latency_bands.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
        write_fragment("predictor_latency_bands", "DaSS predictor v2: equal-FLOPs against equal-latency bands",
                       "python benchmarks/bench_predictor_cv.py --latency-bands " + " ".join(sys.argv[2:]),
                       _latency_body(recs))
        return
    if args.ensemble_grid:
        args.recipes += ensemble_grid()
    torch.set_num_threads(1)
    global SEED0, LOG, HELD_LOG, ENS_LOG, MULTI
    SEED0 = args.seed
    MULTI = bool(args.db)
    if args.db:  # another task set: its rows must not mix with the v1 table's
        LOG, HELD_LOG, ENS_LOG = (p.with_name(p.stem + "_multi.jsonl") for p in (LOG, HELD_LOG, ENS_LOG))
    kshot_log = RESULTS / ("predictor_v2_kshot_multi.jsonl" if args.db else "predictor_v2_kshot.jsonl")
    if args.kshot:
        recs = kshot_curve(load_cv_tasks(args.db))
        kshot_log.write_text("".join(json.dumps(r) + "\n" for r in recs))
        for r in recs:
            print(r, flush=True)
    if args.recipes:
        tasks = load_cv_tasks(args.db)
        if any(any(f in spec for f in FEATURES[1:]) for spec in args.recipes):  # signals needed
            attach_signals(tasks)
        if any('"aligned' in spec for spec in args.recipes):
            attach_aligned(tasks)
        new_rows: list[list[dict]] = []
        for spec in args.recipes:
            name, _, text = spec.partition(":")
            t0 = time.perf_counter()
            if args.heldout:
                targets = args.new_tasks.split(",") if args.new_tasks else None
                log = RESULTS / "predictor_v2_newtasks.jsonl" if targets else HELD_LOG
                with open(log, "a") as fh:
                    for rec in heldout(tasks, name, json.loads(text) if text else {}, args.members, targets):
                        rec |= {"db": DB_TAG, "new_tasks": targets} if targets else {}
                        fh.write(json.dumps(rec) + "\n")
                        print({k: rec[k] for k in rec if k != "per_task"}, flush=True)
                continue
            recs = cross_validate(tasks, name, json.loads(text) if text else {}, 2 if args.quick else args.folds,
                                  args.members, args.quick)
            with open(ENS_LOG if name == "ensemble" else LOG, "a") as fh:
                for rec in recs:
                    rec["seconds"] = round(time.perf_counter() - t0)
                    fh.write(json.dumps(rec) + "\n")
                    print({k: rec[k] for k in rec if k != "per_task"}, flush=True)
            new_rows.append(recs)
        if args.bootstrap_vs is not None and not args.heldout:
            ref = new_rows[args.bootstrap_vs][0]
            for recs in new_rows:
                for rec in recs:
                    if rec is not ref:
                        r, b = task_bootstrap(rec, ref, "regret"), task_bootstrap(rec, ref, "band_spearman")
                        print(f"{rec['recipe']} {json.dumps(rec['options'])} minus the reference: regret "
                              f"{r[0]:+.2f} [{r[1]:+.2f}, {r[2]:+.2f}], band rho {b[0]:+.3f} [{b[1]:+.3f}, "
                              f"{b[2]:+.3f}]", flush=True)
    recs = [json.loads(line) for line in LOG.read_text().splitlines()] if LOG.is_file() else []
    ens = _ensemble_body(recs + ([json.loads(line) for line in ENS_LOG.read_text().splitlines()]
                                 if ENS_LOG.is_file() else []))
    held = [json.loads(line) for line in HELD_LOG.read_text().splitlines()] if HELD_LOG.is_file() else []
    multi = bool(args.db)
    # the reading of the tables, written by hand after the runs
    notes = RESULTS / ("predictor_v2_multi_notes.txt" if multi else "predictor_v2_notes.txt")
    write_fragment("predictor_v2_cv_multi" if multi else "predictor_v2_cv",
                   "DaSS predictor v2: cross-validation on the budgeted metrics"
                   + (f" (meta-training tasks of {' + '.join(args.db)})" if multi else ""),
                   "python benchmarks/bench_predictor_cv.py [--quick] [--folds K] [--members N] [--seed S] "
                   + ("".join(f"--db {d} " for d in args.db) if multi else "")
                   + "[--heldout] [--ensemble-grid] RECIPE ...",
                   _body(recs) + ens + _held_body(held)
                   + _kshot_body([json.loads(x) for x in kshot_log.read_text().splitlines()]
                                 if kshot_log.is_file() else [])
                   + ("\n" + notes.read_text() if notes.is_file() else ""))


if __name__ == "__main__":
    main()

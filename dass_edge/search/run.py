"""``search``: the best students of a teacher under a latency budget, written as a run folder.

Two steps, so that every mistake is caught before anything slow runs or anything is written:

* :func:`prepare_search` turns plain arguments into checked objects (:class:`SearchPlan`): teacher,
  task, search space, the device's measured latency table (profiling this machine first when the
  default ``cpu`` device has no table here), the fastest student (an infeasible budget fails here)
  and the output folder (checked, not created).
* :func:`run_search` takes the plan and an accuracy scorer (``scorer(archs) -> accuracies`` with an
  ``info`` dict of provenance; :func:`dass_edge.predictor.scoring.load_scorer` builds the real one),
  runs the search algorithm under the budget, takes the Pareto front and the top-k, and writes
  ``runs/<id>/`` (``search.json``, ``report.md``, ``pareto.png``, ``candidates.csv``,
  ``rank<k>/config.json``) through a staging folder renamed into place at the end. It returns what
  ``search.json`` holds.

``dass-edge distill runs/<id> --rank K`` and ``dass-edge export runs/<id>`` read that folder
(see :func:`dass_edge.training.distill_run.target_from_run`).
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import math
import os
import random
import shlex
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from dass_edge import __version__
from dass_edge.errors import DassEdgeError
from dass_edge.io import StagedOutput, file_sha256
from dass_edge.latency.gate import fidelity_warning
from dass_edge.latency.runners import backend_names, get_backend
from dass_edge.latency.table import LatencyTable
from dass_edge.search.algorithms import ALGORITHMS, run_algorithm
from dass_edge.search.budget import Budget, parse_budget
from dass_edge.search.pareto import pareto_front
from dass_edge.space import Arch, SearchSpace, spec_flops, spec_params
from dass_edge.spec import ModelSpec

if TYPE_CHECKING:
    from dass_edge.data import TaskData
    from dass_edge.models.resnet import ResNet

__all__ = ["FORMAT", "VERSION", "DEFAULT_DEVICE", "Scorer", "SearchPlan", "prepare_search", "run_search",
           "default_run_id", "next_steps", "profile_command"]

FORMAT, VERSION = "dass-edge/search", 1
#: The device searched for when none is named: the CPU this runs on.
DEFAULT_DEVICE = "cpu"
#: Random students drawn (besides the smallest) to find the fastest one for the feasibility check.
FEASIBILITY_SAMPLE = 1000

Progress = Callable[[str, int, "int | None"], None]


class Scorer(Protocol):
    """Predicted top-1 accuracy (percent) after KD, for a batch of students; ``info`` is its provenance."""

    info: dict

    def __call__(self, archs: Sequence[Arch]) -> Any: ...


@dataclass
class SearchPlan:
    """Everything one search needs, resolved and checked; nothing is written yet."""

    budget_ms: float
    budget: Budget  # as given (absolute or relative to the teacher); budget_ms is what it resolved to
    device: str
    table: LatencyTable
    table_info: dict
    teacher: ResNet
    teacher_meta: dict
    teacher_path: str | None  # None: the shipped demo teacher
    teacher_sha256: str
    data: TaskData
    task: str | None
    data_dir: str | None
    space: SearchSpace
    algo: str
    budget_evals: int
    seed: int
    top_k: int
    params_max: int | None
    out: Path
    run_id: str
    default_out: bool  # the run id was chosen here (so a clash at the end may pick the next free one)
    inputs: dict
    costs: _Costs
    fastest: dict
    teacher_cost: dict
    budget_binds: bool
    replace: bool = False  # an existing search run folder at ``out`` is replaced at the end
    notes: list[str] = field(default_factory=list)


# --- cost cache --------------------------------------------------------------------------------
class _Shape:
    """The fields of a student's :class:`ModelSpec` that the cost model reads (``block_layout``,
    ``spec_keys``, ``spec_params``, ``spec_flops``), without a spec's validation: archs made by the
    space are valid by construction, and the search costs thousands of them per second.
    ``tests/test_search_run.py`` checks the numbers against real specs."""

    __slots__ = ("stages", "stem", "stem_width", "resolution", "in_chans", "num_classes", "feature_width")

    def __init__(self, teacher: ModelSpec, arch: Arch) -> None:
        self.stages, self.stem_width, self.feature_width = arch.widths, arch.widths[0][0], arch.widths[-1][-1]
        self.stem, self.resolution, self.in_chans = teacher.stem, teacher.resolution, teacher.in_chans
        self.num_classes = teacher.num_classes


class _Costs:
    """Latency (p50, p90) and size (params, FLOPs) per arch, each computed once.

    The caches are cleared when they grow large: random sampling under a tight budget tries
    millions of distinct students and only evolution revisits them.
    """

    MAX_CACHED = 200_000

    def __init__(self, space: SearchSpace, table: LatencyTable) -> None:
        self.space, self.table = space, table
        self._teacher: ModelSpec = space.teacher
        self._latency: dict[Arch, tuple[float, float]] = {}
        self._size: dict[Arch, tuple[int, int]] = {}

    def latencies(self, arch: Arch) -> tuple[float, float]:
        """``(p50_ms, p90_ms)`` from the table (corrected)."""
        c = self._latency.get(arch)
        if c is None:
            if len(self._latency) >= self.MAX_CACHED:
                self._latency.clear()
            pred = self.table.predict(_Shape(self._teacher, arch))  # type: ignore[arg-type]
            c = self._latency[arch] = (pred["p50_ms"], pred["p90_ms"])
        return c

    def latency(self, arch: Arch) -> float:
        return self.latencies(arch)[0]

    def size(self, arch: Arch) -> tuple[int, int]:
        """``(params, flops)``."""
        c = self._size.get(arch)
        if c is None:
            if len(self._size) >= self.MAX_CACHED:
                self._size.clear()
            shape = _Shape(self._teacher, arch)
            c = self._size[arch] = (spec_params(shape), spec_flops(shape))  # type: ignore[arg-type]
        return c

    def get(self, arch: Arch) -> tuple[float, float, int, int]:
        """``(p50_ms, p90_ms, params, flops)``."""
        return (*self.latencies(arch), *self.size(arch))

    def constrained(self, budget_ms: float, params_max: int | None) -> Callable[[Arch], float]:
        """The latency the algorithms constrain on: infinite for students over ``params_max``, so
        sampling and mutation never hand those to the scorer."""
        if params_max is None:
            return self.latency

        def latency(arch: Arch) -> float:
            ms = self.latency(arch)
            if ms > budget_ms:
                return ms  # out anyway: skip the size
            return ms if self.size(arch)[0] <= params_max else math.inf

        return latency


# --- preparation -------------------------------------------------------------------------------
def default_run_id(now: _dt.datetime | None = None) -> str:
    """``search-YYYYmmdd-HHMMSS`` (local time)."""
    return f"search-{(now or _dt.datetime.now()).strftime('%Y%m%d-%H%M%S')}"


def _check_scalars(top_k: int, algo: str, budget_evals: int, params_max: int | None,
                   task: str | None, data_dir: str | Path | None) -> None:
    if top_k < 1:
        raise DassEdgeError(f"--top-k must be >= 1, got {top_k}")
    if algo not in ALGORITHMS:
        raise DassEdgeError(f"unknown search algorithm {algo!r}; choose one of {', '.join(ALGORITHMS)}")
    if budget_evals < 1:
        raise DassEdgeError(f"--budget-evals must be >= 1, got {budget_evals}")
    if params_max is not None and params_max < 1:
        raise DassEdgeError(f"--params-max must be >= 1, got {params_max}")
    if task is not None and data_dir is not None:
        raise DassEdgeError("give either --task or --data, not both")


def _is_search_run(folder: Path) -> bool:
    try:
        return json.loads((folder / "search.json").read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _check_out(out: Path, explicit: bool, replace: bool = False) -> None:
    """Fail now (creating nothing) if the run folder cannot be written at the end."""
    flag = "--out" if explicit else "the run folder"
    if out.exists():
        if not out.is_dir():
            raise DassEdgeError(f"{flag} {out} is a file; choose a folder that does not exist yet")
        if any(out.iterdir()):
            if not replace:
                raise DassEdgeError(f"{flag} {out} already exists and is not empty; choose another --out, or add "
                                    "--replace to replace that search run")
            if not _is_search_run(out):
                raise DassEdgeError(f"--replace only replaces a search run folder, and {out} has no search.json "
                                    "of one; choose another --out")
    parent = next((p for p in out.absolute().parents if p.exists()), None)
    if parent is None or not parent.is_dir():
        raise DassEdgeError(f"cannot create {flag} {out}: {parent} is not a folder; choose another location")
    try:  # os.access says yes to root even where nothing can be created (/proc): try it for real
        os.rmdir(tempfile.mkdtemp(prefix=".dass-edge-check-", dir=parent))
    except OSError as e:
        raise DassEdgeError(f"cannot create {flag} {out}: {parent} is not writable ({e.strerror}); choose another "
                            "location") from None


def _pick_out(out: str | Path | None, runs_dir: str | Path, run_id: str | None) -> tuple[Path, str, bool]:
    if out is not None:
        path = Path(out)
        return path, path.name or str(path), False
    base = Path(runs_dir)
    rid = run_id or default_run_id()
    stem, n = rid, 2
    while (base / rid).exists():
        rid, n = f"{stem}-{n}", n + 1
    return base / rid, rid, run_id is None


def _task_for(teacher_meta: dict, teacher_label: str, task: str | None,
              data_dir: str | Path | None) -> tuple[str | None, str | None]:
    """The task to search for: the one given, else the one the teacher records it was trained on."""
    if task is not None or data_dir is not None:
        return task, (str(Path(data_dir).resolve()) if data_dir is not None else None)
    if teacher_meta.get("task"):
        return str(teacher_meta["task"]), None
    if teacher_meta.get("data_dir") and Path(teacher_meta["data_dir"]).is_dir():
        return None, str(Path(teacher_meta["data_dir"]).resolve())
    raise DassEdgeError(f"{teacher_label} records no task or data folder it was trained on; pass --task NAME or "
                        "--data DIR")


def _check_classes(teacher: ResNet, task: str | None) -> None:
    """Catch a built-in task with another class count before generating its images."""
    if task is None:
        return
    from dass_edge.data import builtin_tasks

    info = builtin_tasks().get(task)
    if info is not None and info.num_classes != teacher.spec.num_classes:
        raise DassEdgeError(f"the teacher has {teacher.spec.num_classes} classes but task {task} has "
                            f"{info.num_classes}; use a teacher trained on this task")


def _table_info(table: LatencyTable, source: str) -> dict:
    from dass_edge.resources import tables_dir

    path = table.path
    if source != "profiled here" and path is not None:
        try:
            source = "shipped" if Path(path).resolve().is_relative_to(tables_dir().resolve()) else "user"
        except OSError:
            pass
    prov, fid = table.provenance, table.fidelity
    return {
        "path": str(path) if path else None,
        "sha256": file_sha256(path) if path and Path(path).is_file() else None,
        "source": source,
        "device": table.device, "backend": table.backend, "backend_version": prov.get("backend_version"),
        "precision": table.precision, "threads": prov.get("threads"), "batch": table.batch,
        "resolution": table.resolution, "measured_on": prov.get("measured_on"), "date": prov.get("date"),
        "entries": len(table.entries), "correction": table.correction,
        "fidelity": {k: fid.get(k) for k in ("students", "within_10pct", "rmspe", "spearman", "method", "fidelity_ok")},
        "transferred": {k: table.data["transferred"][k] for k in ("from", "samples")}
        if table.data.get("transferred") else None,
    }


def _resolve_table(device: str | None, spec: ModelSpec, fixed_last_stage: bool, table: LatencyTable | str | Path | None,
                   this_machine: bool, on_note: Callable[[str], None], profile_progress: Progress | None,
                   teacher_path: str | None = None) -> tuple[str, LatencyTable, str]:
    """The device's measured table: given, found, or (default device only) measured here now."""
    from dass_edge.latency import find_tables, load_table, profile_device, resolve_device

    space = SearchSpace(spec, fixed_last_stage=fixed_last_stage)
    if table is not None:
        t = table if isinstance(table, LatencyTable) else LatencyTable.load(table)
        if device is not None and resolve_device(device).name != t.device:
            raise DassEdgeError(f"the latency table {t.path or ''} was measured for device {t.device!r}, "
                                f"not {device!r}")
        if t.resolution != spec.resolution:
            raise DassEdgeError(f"the latency table is for {t.resolution} px but the teacher works at "
                                f"{spec.resolution} px")
        missing = t.missing(space)
        if missing:
            raise DassEdgeError(f"the latency table {t.path or ''} lacks {len(missing)} entries of this teacher's "
                                f"search space (first: {missing[0]}); measure one with dass-edge profile "
                                f"--device {t.device} --teacher <teacher>")
        return t.device, t, "given"
    profile = resolve_device(device or DEFAULT_DEVICE)  # an unknown device fails here
    if device is not None:  # a named device without a table: the error names the profile command
        try:
            return profile.name, load_table(profile, spec.resolution, spec, fixed_last_stage, this_machine), ""
        except DassEdgeError as e:
            head, sep, _ = str(e).partition("; build one with: ")
            if not sep:
                raise
            command = profile_command(profile.name, teacher_path, fixed_last_stage, remote=profile.detect is not None)
            raise DassEdgeError(f"{head}; build one with: {command}") from None
    find_tables(profile.name)  # a malformed table file is an error, not a reason to re-measure
    try:
        return profile.name, load_table(profile, spec.resolution, spec, fixed_last_stage, this_machine), ""
    except DassEdgeError:
        pass
    on_note(f"no latency table for this machine's CPU covering this teacher at {spec.resolution} px; "
            f"profiling it first ({_profiling_eta(space)}; later searches reuse it)")
    result = profile_device(profile, spec, spec.resolution, fixed_last_stage=fixed_last_stage,
                            progress=profile_progress)
    return profile.name, result.table, "profiled here"


def _profiling_eta(space: SearchSpace) -> str:
    """``about N minutes`` for profiling ``space``, estimated from the shipped table's own timings."""
    from dass_edge.latency import find_tables
    from dass_edge.latency.estimate import profiling_estimate_s

    shipped = [t for t, source in find_tables("cpu") if source == "shipped"]
    if not shipped:
        return "a few minutes"
    seconds = profiling_estimate_s(space, shipped[0])
    if seconds < 90:
        return "about a minute"
    return f"about {round(seconds / 60)} minutes, estimated from the shipped table's timings"


def _coverage_notes(predictor: str | Path | None, spec: ModelSpec) -> list[str]:
    """Notes when the teacher lies outside what the DaSS predictor was meta-trained on (stem, resolution,
    depth): its estimates are then an extrapolation. Baseline keys (flops, synflow, ...) learn nothing."""
    from dass_edge.predictor.coverage import db_coverage, extrapolation_notes
    from dass_edge.predictor.store import default_predictor_path, read_predictor_meta

    path = Path(predictor) if predictor is not None else default_predictor_path()
    if not path.is_file():
        return []
    try:
        meta = read_predictor_meta(path)
    except DassEdgeError:
        return []
    coverage = meta.get("coverage")
    if coverage is None and path == default_predictor_path():  # shipped before coverage was recorded
        from dass_edge.metadb import read_rows
        from dass_edge.resources import asset_path

        coverage = db_coverage(read_rows(asset_path("metadb.jsonl")))
    return extrapolation_notes(coverage, spec)


def prepare_search(
    latency_ms: float | str | Budget | None,
    *,
    device: str | None = None,
    teacher: str | Path | None = None,
    task: str | None = None,
    data_dir: str | Path | None = None,
    top_k: int = 5,
    params_max: int | None = None,
    algo: str = "evolution",
    budget_evals: int = 2000,
    seed: int = 0,
    out: str | Path | None = None,
    runs_dir: str | Path = "runs",
    run_id: str | None = None,
    predictor: str | Path | None = None,
    table: LatencyTable | str | Path | None = None,
    this_machine: bool = True,
    fixed_last_stage: bool = True,
    on_note: Callable[[str], None] | None = None,
    profile_progress: Progress | None = None,
    speedup: float | None = None,
    replace: bool = False,
    resolution: int | None = None,
) -> SearchPlan:
    """Check every input and resolve it into objects; write nothing (except a table profiled here).

    Args:
        latency_ms: the budget on the corrected median (p50) latency of the device's table: ms (``0.35``),
            a share of the teacher's latency there (``"50%"``) or a :class:`Budget`.
        device: device profile name; ``None``: this machine's CPU (``cpu``), profiled first if it has
            no table here. A named device without a table is an error naming ``dass-edge profile``.
        teacher: teacher checkpoint; ``None``: the shipped demo teacher.
        task, data_dir: a built-in task or an image folder; neither: the teacher's own task.
        top_k: how many students to pick (>= 1).
        params_max: keep only students with at most this many parameters.
        algo: ``evolution`` (default), ``random`` or ``exhaustive``.
        budget_evals: distinct students to score (default 2000; ``exhaustive`` scores all that fit).
        seed: seed of the search and of the feasibility sample.
        out: the run folder; default ``runs_dir/<run_id>`` with ``run_id`` = ``search-YYYYmmdd-HHMMSS``.
        predictor: predictor checkpoint (recorded as given; the caller builds the scorer).
        table: use this table (object or file) instead of looking one up (tests, other machines' tables).
        this_machine: for ``cpu``/``gpu``, accept only a table measured on this machine.
        fixed_last_stage: keep the last stage at the teacher's width (DaSS; the default tables cover this).
        on_note: called with one-line notes (e.g. "profiling this machine first").
        profile_progress: ``progress(phase, done, total)`` while profiling.
        speedup: instead of ``latency_ms``: ``2`` means half the teacher's latency on the device.
        replace: replace ``out`` at the end if it is a search run folder already (rerunning a command).
        resolution: search (and profile) at this input side instead of the teacher's (a ``.pth`` records
            none: torchvision ResNets would default to 224 px); the weights do not depend on it.

    Raises:
        DassEdgeError: bad input (budget, top-k, algorithm, task/teacher mismatch, --task with --data,
            unwritable --out, unknown device, no table for a named device), or an infeasible budget:
            the message names the fastest student and its latency on the device.
    """
    notes: list[str] = []

    budget = parse_budget(latency_ms, speedup)
    _check_scalars(top_k, algo, budget_evals, params_max, task, data_dir)
    if device is not None and table is None:
        from dass_edge.latency import resolve_device

        resolve_device(device)  # an unknown device fails before anything is loaded
    out_path, rid, default_out = _pick_out(out, runs_dir, run_id)
    _check_out(out_path, explicit=out is not None, replace=replace)
    if isinstance(latency_ms, Budget):  # recorded as the flags that give it
        latency_ms, speedup = (None, round(1 / budget.value, 6)) if budget.text.endswith("x") else (budget.text, None)
    inputs = {"latency_ms": latency_ms, "speedup": speedup, "device": device,
              "teacher": str(teacher) if teacher is not None else None,
              "task": task, "data_dir": str(data_dir) if data_dir is not None else None, "top_k": top_k,
              "params_max": params_max, "algo": algo, "budget_evals": budget_evals, "seed": seed,
              "out": str(out) if out is not None else None,
              "predictor": str(predictor) if predictor is not None else None}

    from dass_edge.data import load_task
    from dass_edge.training.distill import check_compatible
    from dass_edge.training.teacher import load_teacher_and_sha256

    model, tmeta, sha = load_teacher_and_sha256(teacher)
    tpath = str(Path(teacher).resolve()) if teacher is not None else None
    if resolution is not None:
        from dataclasses import replace as _replace

        from dass_edge.validate import whole

        model.spec = _replace(model.spec, resolution=whole(resolution, "--resolution"))  # validated by the spec
        inputs["resolution"] = model.spec.resolution
    label = f"teacher {teacher}" if teacher is not None else "the demo teacher"
    task, data_dir = _task_for(tmeta, label, task, data_dir)
    _check_classes(model, task)
    data = load_task(task, data_dir, model.spec.resolution)
    space = SearchSpace(model.spec, fixed_last_stage=fixed_last_stage)
    check_compatible(model, data, space.smallest_arch(), fixed_last_stage=fixed_last_stage)

    dev, tab, source = _resolve_table(device, model.spec, fixed_last_stage, table, this_machine,
                                      on_note or (lambda _msg: None), profile_progress, tpath)
    if source == "profiled here":
        notes.append(f"this machine's CPU had no latency table for this teacher; it was profiled first ({tab.path})")
    below = fidelity_warning(tab.fidelity, tab.device)
    if below:
        notes.append(below)
    if tab.data.get("transferred"):
        from dass_edge.latency.fewshot import describe_transfer

        notes.append(f"the {dev} latency table is not fully measured: it was {describe_transfer(tab.data)}")
    costs = _Costs(space, tab)
    t_arch = space.teacher_arch()
    t50, t90, tparams, tflops = costs.get(t_arch)
    teacher_cost = {"arch": t_arch.to_dict(), "arch_key": t_arch.key(), "latency_ms": t50, "latency_p90_ms": t90,
                    "params": tparams, "flops": tflops}
    latency_ms = budget.resolve(t50)
    fastest = _fastest(space, costs, params_max, budget, t50, dev, seed)
    binds = latency_ms < t50
    if not binds:
        notes.append(f"the budget, {budget.describe(t50)}, is not below the teacher's own latency on {dev} "
                     f"({t50:.3f} ms), so it does not bind: the teacher itself fits, and its own shape is a candidate")
    notes += _table_notes(tab, dev, profile_command(dev, tpath, fixed_last_stage))
    notes += _coverage_notes(predictor, model.spec)
    return SearchPlan(
        budget_ms=float(latency_ms), budget=budget, device=dev, table=tab,
        table_info=_table_info(tab, source or "found"),
        teacher=model, teacher_meta=tmeta, teacher_path=tpath, teacher_sha256=sha, data=data,
        task=task if data_dir is None else None, data_dir=data_dir, space=space, algo=algo,
        budget_evals=int(budget_evals), seed=int(seed), top_k=int(top_k),
        params_max=int(params_max) if params_max is not None else None, out=out_path, run_id=rid,
        default_out=default_out, inputs=inputs, costs=costs, fastest=fastest, teacher_cost=teacher_cost,
        budget_binds=binds, replace=replace, notes=notes,
    )


#: A table whose profiling sessions of the same student differ by more than this (median ratio) was
#: measured while other jobs ran (``profile`` prints the same warning).
DISTURBED_SPREAD = 1.15


#: Below this share of fidelity students within ±10%, the table's latencies are flagged as unreliable.
WEAK_FIDELITY = 0.8


def _table_notes(table: LatencyTable, device: str, command: str) -> list[str]:
    """A warning when the table's own fidelity check was weak (and why, when its sessions were disturbed).

    A shared machine disturbs every table a little; only a table whose whole-student check failed to
    withstand it is worth a word (the shipped one was measured under load and passed it)."""
    fid = table.fidelity or {}
    within, students = fid.get("within_10pct"), fid.get("students")
    if within is None or not students or within >= WEAK_FIDELITY:
        return []
    spread = fid.get("session_spread")
    why = ""
    if spread and spread > DISTURBED_SPREAD:
        why = (f"; it was measured while other jobs ran (sessions of the same student differed by "
               f"{100 * (spread - 1):.0f}%)")
    return [f"the {device} latency table is unreliable: only {100 * within:.0f}% of the {students} whole students "
            f"checked when profiling were within 10% of its predictions{why}. Latencies near the budget may be "
            f"off; re-measure it on a quiet machine: {command}"]


def profile_command(device: str, teacher_path: str | None, fixed_last_stage: bool = True,
                    remote: bool = False) -> str:
    """The ``dass-edge profile`` command that measures ``device``'s table for this teacher, runnable as is
    (no placeholder: the demo teacher needs no ``--teacher``, and the resolution is the teacher's)."""
    cmd = f"dass-edge profile --device {shlex.quote(device)}"
    if teacher_path is not None:
        cmd += f" --teacher {shlex.quote(teacher_path)}"
    if not fixed_last_stage:
        cmd += " --free-last-stage"
    if remote:
        cmd += " (on the device, or from this machine with --host user@device)"
    return cmd


def _fastest(space: SearchSpace, costs: _Costs, params_max: int | None, budget: Budget, teacher_ms: float,
             device: str, seed: int) -> dict:
    """The fastest student found (the smallest plus a seeded sample); raise if even it misses the budget."""
    budget_ms = budget.resolve(teacher_ms)
    smallest = space.smallest_arch()
    if params_max is not None and costs.size(smallest)[0] > params_max:
        raise DassEdgeError(f"--params-max {params_max:,} is below the smallest student of this teacher "
                            f"({costs.size(smallest)[0]:,} params, {smallest.key()})")
    rng = random.Random(seed)
    archs = [smallest, *(space.sample(rng) for _ in range(FEASIBILITY_SAMPLE))]
    if params_max is not None:
        archs = [a for a in archs if costs.size(a)[0] <= params_max]
    best = min(archs, key=lambda a: (costs.latency(a), a.key()))
    ms = costs.latency(best)
    if ms > budget_ms:
        raise DassEdgeError(f"no student fits {budget.describe(teacher_ms)} on {device}: the fastest is {ms:.3f} ms "
                            f"({best.key()}); {budget.raise_to(ms, teacher_ms)}")
    fit = sum(costs.latency(a) <= budget_ms for a in archs[1:])
    return {"arch": best.to_dict(), "arch_key": best.key(), "latency_ms": ms,
            "random_fit": fit / FEASIBILITY_SAMPLE}  # the share of random students that fit


# --- search ------------------------------------------------------------------------------------
def _scored(scorer: Scorer, counter: list[int], total: int | None, progress: Progress
            ) -> Callable[[Sequence[Arch]], list[float]]:
    """The scorer as the algorithms call it (one batch at a time), checked and reporting progress."""

    def score(archs: Sequence[Arch]) -> list[float]:
        values = np.asarray(scorer(list(archs)), dtype=np.float64).reshape(-1)
        if values.shape[0] != len(archs) or not np.all(np.isfinite(values)):
            raise DassEdgeError(f"the accuracy predictor returned {values.shape[0]} values (finite: "
                                f"{bool(np.all(np.isfinite(values)))}) for {len(archs)} students")
        counter[0] += len(archs)
        progress("search", counter[0], total)
        return values.tolist()

    return score


def _row(arch: Arch, acc: float, costs: _Costs) -> dict:
    p50, p90, params, flops = costs.get(arch)
    return {"arch": arch.to_dict(), "arch_key": arch.key(), "predicted_acc": acc, "latency_ms": p50,
            "latency_p90_ms": p90, "params": params, "flops": flops}


def _picks(archs: list[Arch], accs: list[float], lats: list[float], front: list[int], k: int,
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


def next_steps(run_dir: str | Path, device: str, backend: str | None = None, precision: str | None = None) -> dict:
    """The commands that continue from a run folder: distill the best pick, then export it."""
    run = shlex.quote(str(run_dir))
    spec = get_backend(backend) if backend in backend_names() else None
    if spec is not None and spec.builds_on_device:
        export = f"dass-edge export {run} --format {spec.export_format} --device {device} --host user@device"
    else:
        fmt = "onnx-fp16" if precision == "fp16" else "onnx-int8"
        export = f"dass-edge export {run} --format {fmt}" + ("" if device == "cpu" else f" --device {device}")
    return {"distill": f"dass-edge distill {run} --rank 1", "export": export}


def run_search(plan: SearchPlan, scorer: Scorer, progress: Progress | None = None) -> dict:
    """Search ``plan``'s space with ``scorer`` and write the run folder; returns ``search.json``'s content.

    Args:
        plan: from :func:`prepare_search`.
        scorer: ``scorer(archs) -> predicted accuracies`` (percent, one per arch; called in batches) with
            an ``info`` dict describing the predictor (recorded in ``search.json``).
        progress: ``progress("search", scored, total)``; ``total`` is ``None`` for exhaustive search.

    Raises:
        DassEdgeError: the predictor returned malformed scores, or the run folder could not be written
            (nothing is left behind then).
    """
    progress = progress or (lambda phase, done, total: None)
    t0 = time.perf_counter()
    costs = plan.costs
    latency = costs.constrained(plan.budget_ms, plan.params_max)
    counter = [0]
    total = None if plan.algo == "exhaustive" else plan.budget_evals
    score = _scored(scorer, counter, total, progress)
    log = run_algorithm(plan.algo, plan.space, score, latency, plan.budget_ms, plan.budget_evals, plan.seed)
    if not log.candidates:  # a budget that random draws almost never meet: start from the fastest student
        log.score_new([Arch.from_dict(plan.fastest["arch"])], score, latency)
    t_arch = plan.space.teacher_arch()
    if latency(t_arch) <= plan.budget_ms:  # the teacher's own shape fits: it is a candidate, whatever was drawn
        log.score_new([t_arch], score, latency)
    progress("search", counter[0], counter[0])  # done: the bar ends full even when the search stopped early
    archs = list(log.candidates)
    accs = [log.candidates[a].score for a in archs]
    lats = [costs.latency(a) for a in archs]
    front = pareto_front(lats, accs)
    t_index = archs.index(t_arch) if t_arch in log.candidates else None
    tolerance = float(((getattr(scorer, "info", None) or {}).get("heldout_metrics") or {}).get("mae") or 0.0)
    picks = _picks(archs, accs, lats, front, plan.top_k, t_index, tolerance)
    seconds = time.perf_counter() - t0
    on_front = set(front)

    notes = list(plan.notes)
    if plan.algo != "exhaustive" and len(archs) < plan.budget_evals:
        why = ("the population converged: its children were all scored already, and random draws found no new "
               "student under the budget (few fit it)" if plan.algo == "evolution"
               else "few distinct students fit the constraints")
        notes.append(f"the search stopped after {len(archs)} distinct students (of --budget-evals "
                     f"{plan.budget_evals}): {why}")
    if len(picks) < plan.top_k:
        notes.append(f"the search scored only {len(picks)} students, fewer than --top-k {plan.top_k}")
    if picks and archs[picks[0]] == t_arch:
        notes.append(f"rank 1 is the teacher's own shape (distilled, it gives back the teacher): the budget does "
                     f"not bind, and no faster student is predicted more accurate by more than the predictor's "
                     f"error ({tolerance:g} points); lower the budget for a smaller, faster student")
    top = []
    for rank, i in enumerate(picks, start=1):
        top.append({"rank": rank, **_row(archs[i], accs[i], costs), "on_front": i in on_front,
                    "config": f"rank{rank}/config.json"})
    tinfo = {"path": plan.teacher_path, "sha256": plan.teacher_sha256, **plan.teacher_cost,
             "val_acc": plan.teacher_meta.get("val_acc"), "test_acc": plan.teacher_meta.get("test_acc")}
    record: dict[str, Any] = {
        "format": FORMAT, "version": VERSION, "id": plan.run_id, "run_dir": str(plan.out),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "dass_edge_version": __version__,
        "budget_ms": plan.budget_ms, "budget": plan.budget.to_dict(plan.teacher_cost["latency_ms"]),
        "budget_binds": plan.budget_binds, "device": plan.device,
        "table": plan.table_info, "predictor": _plain(getattr(scorer, "info", None) or {}),
        "teacher": tinfo, "task": plan.task, "data_dir": plan.data_dir, "resolution": plan.teacher.spec.resolution,
        "num_classes": plan.teacher.spec.num_classes,
        "space": {"fixed_last_stage": plan.space.fixed_last_stage, "size": plan.space.size(),
                  "width_options": [list(o) for o in plan.space.width_options],
                  "max_depths": list(plan.space.max_depths)},
        "algo": plan.algo, "budget_evals": plan.budget_evals, "seed": plan.seed, "top_k": plan.top_k,
        "params_max": plan.params_max, "inputs": plan.inputs,
        "evaluated": len(archs), "seconds": round(seconds, 3), "fastest": plan.fastest,
        "front": [{k: v for k, v in _row(archs[i], accs[i], costs).items() if k != "arch"} for i in front],
        "top": top, "notes": notes,
        "next_steps": next_steps(plan.out, plan.device, plan.table.backend, plan.table.precision),
    }
    rows = [{**{k: v for k, v in _row(a, accs[i], costs).items() if k != "arch"}, "on_front": i in on_front}
            for i, a in enumerate(archs)]
    _write_run(plan, record, rows)
    return record


# --- the run folder ----------------------------------------------------------------------------
_CSV_FIELDS = ("arch_key", "predicted_acc", "latency_ms", "latency_p90_ms", "params", "flops", "on_front")


def _write_run(plan: SearchPlan, record: dict, rows: list[dict]) -> None:
    """Write everything into a staging folder next to the run folder, then rename it into place."""
    from dass_edge.search.report import write_report

    if plan.default_out and plan.out.exists():  # another search took this id meanwhile: take the next free one
        plan.out, plan.run_id, _ = _pick_out(None, plan.out.parent, plan.run_id)
        record.update(id=plan.run_id, run_dir=str(plan.out),
                      next_steps=next_steps(plan.out, plan.device, plan.table.backend, plan.table.precision))
    with StagedOutput(plan.out, whole=True, what="run folder") as staged:
        stage = staged.path("")
        files = ["search.json", "report.md", "pareto.png", "candidates.csv"]
        for pick in record["top"]:
            (stage / f"rank{pick['rank']}").mkdir()
            config = json.dumps(_config(plan, record, pick), indent=2, sort_keys=True) + "\n"
            (stage / pick["config"]).write_text(config)
            files.append(pick["config"])
        with open(stage / "candidates.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=_CSV_FIELDS)
            w.writeheader()
            w.writerows(rows)
        write_report(stage, record, rows)
        record["files"] = files
        (stage / "search.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        old = _set_aside(plan.out) if plan.replace else None
        try:
            staged.commit_folder()
        except BaseException:
            if old is not None:  # put the replaced run back
                os.rename(old / plan.out.name, plan.out)
                old.rmdir()
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _set_aside(out: Path) -> Path | None:
    """Move the search run folder being replaced into a hidden holder folder beside it (removed once the new
    one is in place); returns the holder."""
    if not out.exists() or not any(out.iterdir()):
        return None
    if not _is_search_run(out):
        raise DassEdgeError(f"--replace only replaces a search run folder, and {out} is not one (any more); "
                            "choose another --out")
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.replaced-", dir=out.parent))
    os.rename(out, old / out.name)
    return old


def _config(plan: SearchPlan, record: dict, pick: dict) -> dict:
    """``rank<k>/config.json``: the student and what it is distilled from, enough to distill it by hand."""
    return {
        "format": "dass-edge/student-config", "version": 1, "rank": pick["rank"], "arch": pick["arch"],
        "arch_key": pick["arch_key"], "teacher": {"path": plan.teacher_path, "sha256": plan.teacher_sha256},
        "task": record["task"], "data_dir": record["data_dir"], "resolution": record["resolution"],
        "fixed_last_stage": plan.space.fixed_last_stage, "device": plan.device, "budget_ms": plan.budget_ms,
        "predicted_acc": pick["predicted_acc"], "latency_ms": pick["latency_ms"],
        "latency_p90_ms": pick["latency_p90_ms"], "params": pick["params"], "flops": pick["flops"],
        "distill_command": f"dass-edge distill {shlex.quote(str(plan.out))} --rank {pick['rank']}",
    }


def _plain(info: dict) -> dict:
    """Provenance as plain JSON data (paths and numpy numbers become strings/numbers)."""
    return json.loads(json.dumps(dict(info), default=lambda v: v.item() if hasattr(v, "item") else str(v)))

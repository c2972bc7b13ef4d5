"""``prepare_search``: every input of a search checked and resolved into a :class:`SearchPlan` before anything
slow runs or anything is written: teacher, task, search space, the device's latency table (profiling this
machine first when the default ``cpu`` device has no table here), the fastest student (an infeasible budget
fails here) and the run folder (checked, not created)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dass_edge.errors import DassEdgeError
from dass_edge.latency.gate import fidelity_warning
from dass_edge.latency.table import LatencyTable
from dass_edge.search.algorithms import ALGORITHMS, DEFAULT_BUDGET_EVALS
from dass_edge.search.budget import Budget, parse_budget
from dass_edge.search.costs import Costs
from dass_edge.search.device_table import Progress, profile_command, resolve_table, table_info, table_notes
from dass_edge.search.refine import REFINE_EPOCHS, check_refine
from dass_edge.search.run_folder import check_run_dir, pick_run_dir
from dass_edge.space import SearchSpace
from dass_edge.spec import ModelSpec

if TYPE_CHECKING:
    from dass_edge.data import TaskData
    from dass_edge.models.resnet import ResNet

__all__ = ["SearchPlan", "prepare_search"]

#: Random students drawn (besides the smallest) to find the fastest one for the feasibility check.
FEASIBILITY_SAMPLE = 1000


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
    costs: Costs
    fastest: dict
    teacher_cost: dict
    budget_binds: bool
    replace: bool = False  # an existing search run folder at ``out`` is replaced at the end
    notes: list[str] = field(default_factory=list)
    refine: int = 0  # finalists distilled briefly to choose rank 1 (0: the predictor alone; see search.refine)
    refine_epochs: int = REFINE_EPOCHS
    train_device: str = "cpu"  # where the refinement distills


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


def _coverage_notes(predictor: str | Path | None, spec: ModelSpec) -> list[str]:
    """Notes when the teacher lies outside what the DaSS predictor was meta-trained on (stem, resolution,
    depth): its estimates are then an extrapolation. Baseline keys (flops, synflow, ...) learn nothing."""
    from dass_edge.predictor.coverage import extrapolation_notes, predictor_coverage

    return extrapolation_notes(predictor_coverage(predictor), spec)


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
    budget_evals: int = DEFAULT_BUDGET_EVALS,
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
    refine: int = 0,
    refine_epochs: int = REFINE_EPOCHS,
    train_device: str | None = None,
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
        budget_evals: distinct students to score (default :data:`DEFAULT_BUDGET_EVALS`; ``exhaustive`` scores all
            that fit).
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
        refine: distill ``refine`` finalists briefly (one per depth pattern, half the predictor's, half FLOPs')
            and rank them by their accuracy then (:mod:`dass_edge.search.refine`; 0: the predictor's order alone).
        refine_epochs: epochs of the meta-database recipe each finalist gets.
        train_device: where the refinement distills (cpu, cuda[:N]).

    Raises:
        DassEdgeError: bad input (budget, top-k, algorithm, task/teacher mismatch, --task with --data,
            unwritable --out, unknown device, no table for a named device), or an infeasible budget:
            the message names the fastest student and its latency on the device.
    """
    notes: list[str] = []

    budget = parse_budget(latency_ms, speedup)
    _check_scalars(top_k, algo, budget_evals, params_max, task, data_dir)
    from dass_edge.training.loop import resolve_train_device

    check_refine(refine, refine_epochs)
    train_device = str(resolve_train_device(train_device)) if refine else "cpu"
    if device is not None and table is None:
        from dass_edge.latency import resolve_device

        resolve_device(device)  # an unknown device fails before anything is loaded
    out_path, rid, default_out = pick_run_dir(out, runs_dir, run_id)
    check_run_dir(out_path, explicit=out is not None, replace=replace)
    if isinstance(latency_ms, Budget):  # recorded as the flags that give it
        latency_ms, speedup = (None, round(1 / budget.value, 6)) if budget.text.endswith("x") else (budget.text, None)
    inputs = {"latency_ms": latency_ms, "speedup": speedup, "device": device,
              "teacher": str(teacher) if teacher is not None else None,
              "task": task, "data_dir": str(data_dir) if data_dir is not None else None, "top_k": top_k,
              "params_max": params_max, "algo": algo, "budget_evals": budget_evals, "seed": seed,
              "out": str(out) if out is not None else None,
              "predictor": str(predictor) if predictor is not None else None, "refine": refine,
              "refine_epochs": refine_epochs}

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

    dev, tab, source = resolve_table(device, model.spec, fixed_last_stage, table, this_machine,
                                     on_note or (lambda _msg: None), profile_progress, tpath)
    if source == "profiled here":
        notes.append(f"this machine's CPU had no latency table for this teacher; it was profiled first ({tab.path})")
    below = fidelity_warning(tab.fidelity, tab.device)
    if below:
        notes.append(below)
    if tab.data.get("transferred"):
        from dass_edge.latency.fewshot import describe_transfer

        notes.append(f"the {dev} latency table is not fully measured: it was {describe_transfer(tab.data)}")
    costs = Costs(space, tab)
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
    notes += table_notes(tab, dev, profile_command(dev, tpath, fixed_last_stage))
    notes += _coverage_notes(predictor, model.spec)
    return SearchPlan(
        budget_ms=float(latency_ms), budget=budget, device=dev, table=tab,
        table_info=table_info(tab, source or "found"),
        teacher=model, teacher_meta=tmeta, teacher_path=tpath, teacher_sha256=sha, data=data,
        task=task if data_dir is None else None, data_dir=data_dir, space=space, algo=algo,
        budget_evals=int(budget_evals), seed=int(seed), top_k=int(top_k),
        params_max=int(params_max) if params_max is not None else None, out=out_path, run_id=rid,
        default_out=default_out, inputs=inputs, costs=costs, fastest=fastest, teacher_cost=teacher_cost,
        budget_binds=binds, replace=replace, notes=notes, refine=int(refine), refine_epochs=int(refine_epochs),
        train_device=train_device,
    )


def _fastest(space: SearchSpace, costs: Costs, params_max: int | None, budget: Budget, teacher_ms: float,
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

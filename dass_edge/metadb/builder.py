"""Plan and run a database build: teachers first, then one KD job per (task, student, seed).

Resumable by construction: the plan is deterministic (seeded students, fixed recipe), each finished
run is appended as one row, and a rerun skips every run whose key is already in the database. All
input is checked before any work starts, so bad input leaves the database untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dass_edge.data.builtin import builtin_tasks, cache_dir
from dass_edge.data.frozen import task_file_sha
from dass_edge.errors import DassEdgeError
from dass_edge.io import ensure_writable_dir, file_sha256
from dass_edge.metadb.engines import Engine
from dass_edge.metadb.jobs import kd_job, teacher_job
from dass_edge.metadb.sampling import sample_band_students, sample_students, task_seed
from dass_edge.metadb.schema import row_key
from dass_edge.metadb.store import append_row, check_appendable, read_rows
from dass_edge.models.resnet import is_model, list_models
from dass_edge.training.distill import KDConfig
from dass_edge.training.loop import Recipe
from dass_edge.validate import check_output_dir

__all__ = ["TEACHER_RECIPE", "TaskPlan", "BuildPlan", "plan_jobs", "build_db"]

#: Teachers are trained to convergence: an unconverged teacher makes noisy, inverted labels (DESIGN §5).
TEACHER_RECIPE = Recipe(epochs=60, batch_size=128, lr=0.1, weight_decay=5e-4, label_smoothing=0.1, seed=0)

LogFn = Callable[[str, dict], None]


@dataclass(frozen=True)
class TaskPlan:
    """One task of a build: its teacher shape, whether it is held out, and its students and seeds."""

    name: str
    model: str = "resnet_edge_s"
    heldout: bool = False
    students: int = 40
    seeds: tuple[int, ...] = (0,)
    multi_seed_students: int | None = None  # how many students get every seed (None: all)
    resolution: int | None = None  # this task's input resolution (None: the plan's)
    sampling: str = "even"  # "even" in log-params (v1) or "bands" of near-equal FLOPs (v2)
    bands: int = 8
    per_band: int = 8
    band_tol: float = 0.05


@dataclass
class BuildPlan:
    tasks: list[TaskPlan]
    teachers_dir: Path
    resolution: int = 16
    config: KDConfig = field(default_factory=KDConfig)
    teacher_recipe: Recipe = TEACHER_RECIPE
    sample_seed: int = 0
    threads: int = 1
    device: str = "cpu"  # where jobs train (cuda: every worker shares the GPU)
    cache_dir: Path | None = None
    teacher_paths: dict[str, Path] = field(default_factory=dict)  # explicit teachers by task


SAMPLINGS = ("even", "bands")


def task_resolution(plan: BuildPlan, t: TaskPlan) -> int:
    return t.resolution or plan.resolution


def teacher_path(plan: BuildPlan, task: str) -> Path:
    return plan.teacher_paths.get(task) or plan.teachers_dir / f"{task}.safetensors"


def validate_plan(plan: BuildPlan, out: Path) -> None:
    """Every check that can fail on user input, before anything is trained or written."""
    known = builtin_tasks()
    if not plan.tasks:
        raise DassEdgeError("no tasks given; see 'dass-edge data list' for the built-in tasks")
    names = [t.name for t in plan.tasks]
    if len(set(names)) != len(names):
        raise DassEdgeError(f"a task is listed twice in {names}")
    for t in plan.tasks:
        if t.name not in known:
            raise DassEdgeError(f"unknown task {t.name!r}; see 'dass-edge data list' for the built-in tasks")
        if not is_model(t.model):
            raise DassEdgeError(f"unknown teacher model {t.model!r}; known models: {', '.join(list_models())}")
        if t.students < 1 or not t.seeds:
            raise DassEdgeError(f"task {t.name}: needs at least one student and one seed")
        if t.sampling not in SAMPLINGS:
            raise DassEdgeError(f"unknown sampling {t.sampling!r}; choose one of {', '.join(SAMPLINGS)}")
        if t.sampling == "bands" and (t.bands < 1 or t.per_band < 1 or not 0 < t.band_tol < 0.5):
            raise DassEdgeError(f"task {t.name}: bands and students per band must be >= 1 and the band "
                                f"tolerance in (0, 0.5)")
        if not 8 <= task_resolution(plan, t) <= 128:
            raise DassEdgeError(f"task {t.name}: resolution {task_resolution(plan, t)} is outside 8..128")
    for task in plan.teacher_paths:
        if task not in names:
            raise DassEdgeError(f"a teacher is given for {task!r}, which is not among the tasks")
    plan.config.validate()
    plan.teacher_recipe.validate()
    from dass_edge.training.loop import resolve_train_device

    resolve_train_device(plan.device)
    check_appendable(out)
    missing = False
    for t in plan.tasks:
        path = teacher_path(plan, t.name)
        if path.is_file():
            _check_teacher(path, known[t.name].num_classes, task_resolution(plan, t), t.name)
        elif t.name in plan.teacher_paths:
            raise DassEdgeError(f"teacher {path} does not exist")
        else:
            missing = True
    if missing:
        check_output_dir(plan.teachers_dir, "teacher folder")  # made by the first teacher written


def _check_teacher(path: Path, num_classes: int, resolution: int, task: str) -> None:
    from dass_edge.models.checkpoint import load_checkpoint
    from dass_edge.space import SearchSpace

    model, _ = load_checkpoint(path)
    if model.spec.num_classes != num_classes:
        raise DassEdgeError(f"teacher {path} has {model.spec.num_classes} classes but task {task} has {num_classes}")
    if model.spec.resolution != resolution:
        raise DassEdgeError(f"teacher {path} is for {model.spec.resolution} px but the build is at {resolution} px")
    SearchSpace(model.spec)  # raises if the teacher cannot host students


def plan_jobs(plan: BuildPlan) -> list[dict]:
    """Every KD job of the plan, in build order: student by student across tasks, seed by seed.

    Needs the teachers to exist (their checksums are part of each job's key).
    """
    from dass_edge.models.checkpoint import load_checkpoint
    from dass_edge.space import SearchSpace

    cdir = str(plan.cache_dir or cache_dir())
    per_task: list[list[dict]] = []
    for t in plan.tasks:
        jobs: list[dict] = []
        per_task.append(jobs)
        path = teacher_path(plan, t.name)
        sha = file_sha256(path)
        teacher, _ = load_checkpoint(path)
        space = SearchSpace(teacher.spec)
        seed0 = task_seed(t.name, plan.sample_seed)
        if t.sampling == "bands":
            banded = sample_band_students(space, t.bands, t.per_band, seed0, t.band_tol)
        else:
            banded = [(None, a) for a in sample_students(space, t.students, seed0)]
        n_multi = len(banded) if t.multi_seed_students is None else t.multi_seed_students
        frozen = task_file_sha(t.name)
        for i, (band, arch) in enumerate(banded):
            for seed in (t.seeds if i < n_multi else t.seeds[:1]):
                jobs.append({
                    "task": t.name, "heldout": t.heldout, "resolution": task_resolution(plan, t),
                    "sampling": {"kind": t.sampling, "band": band, "bands": t.bands, "band_tol": t.band_tol}
                    if t.sampling == "bands" else {"kind": "even"},
                    "task_file": frozen[0] if frozen else None, "task_sha256": frozen[1] if frozen else None,
                    "teacher_path": str(path), "teacher_sha256": sha, "arch": arch.to_dict(), "seed": seed,
                    "config": plan.config.to_dict(), "threads": plan.threads, "cache_dir": cdir,
                    "device": plan.device,
                    "key": (t.name, sha, arch.key(), seed, plan.config.recipe_hash()),
                    "student": i,
                })
    # Round-robin over tasks by student: a partly built database covers every task evenly (and the
    # seed pairs of every label-quality task arrive early).
    return sorted((j for jobs in per_task for j in jobs), key=lambda j: j["student"])


def _train_teachers(plan: BuildPlan, engine: Engine, log: LogFn) -> None:
    todo = [t for t in plan.tasks if not teacher_path(plan, t.name).is_file()]
    if not todo:
        return
    work = ensure_writable_dir(Path(plan.cache_dir or cache_dir()) / "teacher_work")
    jobs = [{"task": t.name, "model": t.model, "resolution": task_resolution(plan, t), "threads": plan.threads,
             "device": plan.device,
             "recipe": plan.teacher_recipe.__dict__, "out": str(teacher_path(plan, t.name)), "work_dir": str(work)}
            for t in todo]
    log("teachers", {"total": len(jobs)})
    failed = []
    for job, result, err in engine.run(teacher_job, jobs):
        if err is not None:
            failed.append(job["task"])
            log("teacher_failed", {"task": job["task"], "error": f"{type(err).__name__}: {err}"})
        else:
            log("teacher_done", result)
    if failed:
        raise DassEdgeError(f"teacher training failed for {', '.join(failed)}; see the log")


def build_db(plan: BuildPlan, out: str | Path, engine: Engine, log: LogFn | None = None) -> dict:
    """Build (or continue building) the database at ``out``.

    Returns a summary: ``planned``, ``done_before``, ``added``, ``failed``, ``rows``.

    Raises:
        DassEdgeError: unknown task or model, teacher/task mismatch, unwritable output (nothing written).
    """
    out = Path(out)
    log = log or (lambda event, info: None)
    validate_plan(plan, out)
    _train_teachers(plan, engine, log)
    jobs = plan_jobs(plan)
    done = {row_key(r) for r in read_rows(out)}
    todo = [j for j in jobs if tuple(j["key"]) not in done]
    log("start", {"planned": len(jobs), "done": len(jobs) - len(todo), "todo": len(todo)})
    added, failed = 0, 0
    for job in todo:
        job["engine"] = engine.name
    for job, row, err in engine.run(kd_job, todo):
        if err is not None:
            failed += 1
            log("failed", {"job": {k: job[k] for k in ("task", "seed", "arch")},
                           "error": f"{type(err).__name__}: {err}"})
            continue
        append_row(out, row)
        added += 1
        log("row", row)
    return {"planned": len(jobs), "done_before": len(jobs) - len(todo), "added": added, "failed": failed,
            "rows": len(read_rows(out))}

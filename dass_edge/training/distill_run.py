"""`dass-edge distill` targets: a search run folder and a rank, or an explicit arch; and the files a
finished KD run leaves (``student.safetensors`` with its metadata, ``distill.json``).

The export step reads exactly these files, so their names and fields are fixed here in one place.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from dass_edge import __version__
from dass_edge.data import TaskData, load_task
from dass_edge.errors import DassEdgeError
from dass_edge.io import atomic_write_json, ensure_writable_dir
from dass_edge.models.checkpoint import save_checkpoint
from dass_edge.models.resnet import ResNet
from dass_edge.space import Arch, SearchSpace, parse_arch, spec_flops, spec_params
from dass_edge.training.distill import DistillResult, KDConfig, check_compatible, distill
from dass_edge.training.loop import ProgressFn
from dass_edge.training.teacher import load_teacher_and_sha256
from dass_edge.validate import check_output_dir, finite_or_none

__all__ = ["DistillTarget", "target_from_run", "target_from_args", "run_distill", "check_replaceable", "STUDENT_FILE",
           "LOG_FILE"]

STUDENT_FILE = "student.safetensors"
LOG_FILE = "distill.json"
RESUME_FILE = "distill.partial.pt"


@dataclass
class DistillTarget:
    """Everything one KD run needs, resolved and checked (nothing written yet)."""

    teacher: ResNet
    teacher_path: str | None  # None: the shipped demo teacher
    teacher_sha256: str
    data: TaskData
    task: str | None
    data_dir: str | None
    arch: Arch
    out: Path
    rank: int | None = None


def _load_data(teacher: ResNet, task: str | None, data_dir: str | Path | None, resolution: int | None) -> TaskData:
    return load_task(task, data_dir, resolution or teacher.spec.resolution)


def target_from_run(run_dir: str | Path, rank: int = 1) -> DistillTarget:
    """The rank-``rank`` student of a search run (``RUN_DIR/search.json``), written to ``RUN_DIR/rank<K>/``."""
    run_dir = Path(run_dir)
    meta_path = run_dir / "search.json"
    if not meta_path.is_file():
        raise DassEdgeError(f"{run_dir} is not a search run folder (no search.json); run 'dass-edge search' first")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as e:
        raise DassEdgeError(f"{meta_path} is not valid JSON ({e.msg})") from None
    top = meta.get("top") or []
    if not 1 <= rank <= len(top):
        raise DassEdgeError(f"--rank {rank} is outside 1..{len(top)} (the run's top students)")
    tinfo = meta.get("teacher") or {}
    tpath = tinfo.get("path")
    if tpath is not None and not Path(tpath).is_absolute() and (run_dir / tpath).is_file():
        tpath = str(run_dir / tpath)
    teacher, _, sha = load_teacher_and_sha256(tpath)
    if tinfo.get("sha256") and tinfo["sha256"] != sha:
        raise DassEdgeError(f"teacher {tpath or 'demo teacher'} changed since the search (checksum differs)")
    data = _load_data(teacher, meta.get("task"), meta.get("data_dir"), meta.get("resolution"))
    arch = Arch.from_dict(top[rank - 1]["arch"])
    check_compatible(teacher, data, arch)
    check_replaceable(run_dir / f"rank{rank}", arch)
    return DistillTarget(teacher, tpath, sha, data, meta.get("task") if not meta.get("data_dir") else None,
                         meta.get("data_dir"), arch, run_dir / f"rank{rank}", rank)


def target_from_args(arch: str, out: str | Path, teacher: str | Path | None = None, task: str | None = None,
                     data_dir: str | Path | None = None, resolution: int | None = None) -> DistillTarget:
    """An explicit student (JSON or arch key) of ``teacher`` (default: the demo teacher) on a task or folder."""
    a = parse_arch(arch)
    check_output_dir(out)  # output problems first, before the teacher and data are loaded
    check_replaceable(Path(out), a)
    model, tmeta, sha = load_teacher_and_sha256(teacher)
    tpath = str(teacher) if teacher is not None else None
    if task is None and data_dir is None:
        task = tmeta.get("task")  # the built-in task the teacher was trained on, if it says
    data = _load_data(model, task, data_dir, resolution)
    check_compatible(model, data, a)
    return DistillTarget(model, tpath, sha, data, data.name if data_dir is None else None,
                         str(data_dir) if data_dir is not None else None, a, Path(out))


def check_replaceable(out: Path, arch: Arch) -> None:
    """Refuse to overwrite a folder that holds the finished student of another arch.

    Rerunning the same arch into its own folder is how a run resumes (and refreshes), so that is allowed;
    silently replacing a different student would lose it.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DassEdgeError(f"output {out} is a file, not a folder; choose another --out")
    log = out / LOG_FILE
    if not log.is_file():
        return
    try:
        recorded = json.loads(log.read_text(encoding="utf-8")).get("arch")
        other = Arch.from_dict(recorded) if recorded is not None else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError, DassEdgeError):
        raise DassEdgeError(f"{out} already holds a {LOG_FILE} that is not readable; choose another --out or "
                            "delete the folder") from None
    if other is not None and other != arch:
        raise DassEdgeError(f"{out} already holds student {other.key()}; choose another --out or delete the folder "
                            f"to replace it with {arch.key()}")


def run_distill(target: DistillTarget, config: KDConfig, *, cache_dir: str | Path | None,
                progress: ProgressFn | None = None, device: str | torch.device = "cpu") -> dict:
    """Train the target's student and write ``student.safetensors`` and ``distill.json`` into ``target.out``.

    Killed and rerun, it resumes from the last finished epoch (``distill.partial.pt`` in the folder).
    Returns the JSON log.
    """
    config.validate()
    check_replaceable(target.out, target.arch)
    out = ensure_writable_dir(target.out)
    t0 = time.time()
    result: DistillResult = distill(target.teacher, target.arch, target.data, config,
                                    teacher_sha256=target.teacher_sha256, cache_dir=cache_dir,
                                    resume_path=out / RESUME_FILE, progress=progress, device=device)
    space = SearchSpace(target.teacher.spec, fixed_last_stage=False)
    sspec = space.to_spec(target.arch)
    meta = {
        "kind": "student", "task": target.task, "data_dir": target.data_dir, "teacher_sha256": target.teacher_sha256,
        "arch": target.arch.to_dict(), "val_acc": round(result.val_acc, 3),
        "final_val_acc": round(result.final_val_acc, 3), "test_acc": finite_or_none(round(result.test_acc, 3)),
        "best_epoch": result.best_epoch, "recipe": config.to_dict(), "dass_edge_version": __version__,
    }
    save_checkpoint(out / STUDENT_FILE, result.student, meta)
    log = {
        **meta, "rank": target.rank, "teacher": {"path": target.teacher_path, "sha256": target.teacher_sha256},
        "arch_key": target.arch.key(), "params": spec_params(sspec), "flops": spec_flops(sspec),
        "resolution": target.data.resolution, "history": result.history, "checkpoint": STUDENT_FILE,
        "train_seconds": round(result.seconds, 1), "images_per_second": round(result.images_per_second, 1),
        "teacher_cache": result.cache, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "wall_seconds": round(time.time() - t0, 1), "device": str(device),
    }
    atomic_write_json(out / LOG_FILE, log)
    return log

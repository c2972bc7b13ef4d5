"""Short-KD refinement: distill the search's finalists for a few epochs and keep the one that learns best.

Zero-shot, no predictor we have measured picks better than FLOPs under a latency budget: the students'
shapes carry signal inside a task, but how it changes between tasks does not transfer (BENCHMARKS.md,
issue 13). What does transfer is measuring it: a student's validation accuracy after the first epochs of
the meta-database recipe already ranks students of equal latency close to their final KD accuracy. So the
search spends a little real distillation on its top M finalists, with the user's own teacher and data, and
picks the one ahead after E epochs. M = 4, E = 3 (1.2 runs of the 10-epoch recipe) was chosen on the
meta-training tasks by a rule fixed before the simulation ran (``benchmarks/bench_refine.py``); half the
finalists come from FLOPs (a second rule, after the head-to-head showed the predictor's finalists can all
miss the region where FLOPs' pick lies).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dass_edge.errors import DassEdgeError
from dass_edge.space import Arch

if TYPE_CHECKING:
    import torch

    from dass_edge.data.task import TaskData
    from dass_edge.models.resnet import ResNet

__all__ = ["REFINE_EPOCHS", "REFINE_FINALISTS", "ShortKD", "check_refine", "finalists_from", "finalists_with_source",
           "pick_finalists", "refine_order", "short_kd"]

REFINE_FINALISTS = 4  # students distilled briefly: one per depth pattern, half the predictor's, half FLOPs'
REFINE_EPOCHS = 3  # of the meta-database recipe's 10


@dataclass(frozen=True)
class ShortKD:
    """One finalist after ``epochs`` epochs of KD: its validation accuracy then (percent) and the cost."""

    arch: Arch
    val_acc: float
    epochs: int
    seconds: float
    reused: bool = False  # read back from the work folder: an interrupted or identical earlier run did it


def check_refine(finalists: int, epochs: int) -> None:
    """A one-line error for a refinement setting that cannot run (before anything slow starts)."""
    from dass_edge.training.distill import DB_RECIPE

    for value, flag in ((finalists, "--refine"), (epochs, "--refine-epochs")):
        if isinstance(value, bool) or not isinstance(value, int):
            raise DassEdgeError(f"{flag} must be an integer, got {value!r}")
    if finalists < 0:
        raise DassEdgeError(f"--refine must be 0 (off) or the number of finalists to distill, got {finalists}")
    if not 1 <= epochs <= DB_RECIPE.epochs:
        raise DassEdgeError(f"--refine-epochs must be from 1 to {DB_RECIPE.epochs} (the recipe's epochs), got {epochs}")


def pick_finalists(archs: Sequence[Arch], scores: Sequence[float], n: int,
                   hedge: Sequence[float] | None = None) -> list[int]:
    """Indices of ``n`` finalists: the best-scored student of each of the best-scored depth patterns.

    A search's top students are mostly width variants of one shape (a few channels apart, equally fast):
    distilling four of those says little. One per depth pattern spends the short runs on shapes that
    differ. With ``hedge`` (a second score, e.g. FLOPs) half the finalists (rounded down) come from it instead,
    again one per depth pattern and none the first half took: when the predictor's whole top is wrong for
    the task, the short runs still see the other kind of student. Fewer patterns than ``n``: the rest are
    filled by score."""
    return [i for i, _ in finalists_with_source(archs, scores, n, hedge)]


def finalists_with_source(archs: Sequence[Arch], scores: Sequence[float], n: int,
                          hedge: Sequence[float] | None = None) -> list[tuple[int, str]]:
    """:func:`pick_finalists` with who chose each: ``"score"`` (one per pattern), ``"hedge"`` or ``"fill"``."""
    if n <= 0:
        return []
    half = n // 2 if hedge is not None else 0
    sources = [("score", scores, n - half)] + ([("hedge", hedge, half)] if hedge is not None else [])
    return finalists_from(archs, sources, fill=scores)


def finalists_from(archs: Sequence[Arch], sources: Sequence[tuple[str, Sequence[float], int]],
                   fill: Sequence[float] | None = None) -> list[tuple[int, str]]:
    """Finalists named by several scores in turn: each ``(name, scores, count)`` source adds the best-scored
    student of each of its ``count`` best depth patterns that no earlier source took. Fewer patterns than
    finalists: the rest are the best by ``fill`` (default: the first source's scores), tagged ``"fill"``."""
    out: list[tuple[int, str]] = []
    seen: set = set()
    for name, values, count in sources:
        target = len(out) + count
        for i in sorted(range(len(archs)), key=lambda i: -float(values[i])):
            if len(out) >= target:
                break
            if archs[i].depths not in seen:
                seen.add(archs[i].depths)
                out.append((i, name))
    n = sum(count for _, _, count in sources)
    if len(out) < n and sources:
        taken = {i for i, _ in out}
        by = fill if fill is not None else sources[0][1]
        order = sorted(range(len(archs)), key=lambda i: -float(by[i]))
        out += [(i, "fill") for i in order if i not in taken][: n - len(out)]
    return out


def refine_order(early: Sequence[float], rank: Sequence[float]) -> np.ndarray:
    """Indices of the finalists, best first: by early accuracy, ties broken by the predictor's score."""
    return np.lexsort((-np.asarray(rank, dtype=float), -np.asarray(early, dtype=float)))


def short_kd(teacher: ResNet, data: TaskData, archs: Sequence[Arch], epochs: int = REFINE_EPOCHS, *, seed: int = 0,
             device: str | torch.device = "cpu", progress: Callable[[int, int], None] | None = None,
             work_dir: str | Path | None = None, teacher_sha256: str | None = None,
             cache_dir: str | Path | None = None) -> list[ShortKD]:
    """Distill each of ``archs`` from ``teacher`` on ``data`` for the first ``epochs`` epochs of the
    meta-database recipe (its schedule unchanged, so the accuracy is the full run's at that epoch).

    ``progress(done, total)`` counts epochs over all finalists. With ``work_dir`` the refinement survives
    kill -9: each finished finalist's result is kept there (one small JSON file, keyed by everything that
    determines it: teacher file, training images, student, epochs, seed, device kind, torch version) and read
    back instead of trained again, and the finalist in progress resumes from its last finished epoch. With
    ``cache_dir`` and ``teacher_sha256`` the teacher's answers to the first ``epochs`` epochs are computed once
    and shared by all finalists (the teacher-output cache of ``distill``), not once per finalist.
    """
    from dass_edge.training.distill import KDConfig, distill

    check_refine(len(archs), epochs)
    config = KDConfig().with_seed(seed)
    total, out = len(archs) * epochs, []
    report = progress or (lambda done, total: None)
    report(0, total)
    folder = Path(work_dir) if work_dir is not None else None
    try:  # both are only aids (resume, speed): a cache that cannot be written costs them, not the search
        for where in (folder, Path(cache_dir) if cache_dir is not None else None):
            if where is not None:
                where.mkdir(parents=True, exist_ok=True)
    except OSError:
        folder, cache_dir = None, None
    from dass_edge.training.teacher_cache import data_fingerprint

    # the training images' checksum names every kept result: computed once for all finalists
    data_sha = data_fingerprint(data) if folder is not None and teacher_sha256 else ""
    for i, arch in enumerate(archs):
        t0 = time.perf_counter()
        key = _result_key(teacher_sha256, data_sha, data.flip_ok, arch, epochs, config, device) if folder else None
        kept = _read_result(folder / f"{key}.json", key) if folder and key else None
        if kept is not None:
            out.append(ShortKD(arch, kept["val_acc"], epochs, kept["seconds"], reused=True))
            report((i + 1) * epochs, total)
            continue

        def step(event: str, info: dict, i: int = i) -> None:
            if event == "epoch":
                report(i * epochs + int(info["epoch"]), total)

        resume = folder / f"{key}.resume.pt" if folder and key else None
        result = distill(teacher, arch, data, config, progress=step, device=device, stop_after=epochs,
                         resume_path=resume, cache_dir=cache_dir, teacher_sha256=teacher_sha256)
        run = ShortKD(arch, float(result.history[-1]["val_acc"]), epochs, time.perf_counter() - t0)
        if folder and key:
            from dass_edge.io import atomic_write_json

            atomic_write_json(folder / f"{key}.json", {"key": key, "arch_key": arch.key(), "val_acc": run.val_acc,
                                                        "seconds": round(run.seconds, 3)})
        out.append(run)
    return out


def _result_key(teacher_sha256: str | None, data_sha: str, flip: bool, arch: Arch, epochs: int,
                config: object, device: str | torch.device) -> str | None:
    """What a finalist's short run is a function of (None: the teacher has no file checksum to name it by)."""
    import hashlib
    import json
    from dataclasses import asdict

    import torch

    if not teacher_sha256:
        return None
    payload = {"v": 1, "teacher": teacher_sha256, "data": data_sha, "flip": flip,
               "arch": arch.key(), "epochs": epochs, "config": asdict(config), "device": torch.device(device).type,
               "torch": torch.__version__}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _read_result(path: Path, key: str) -> dict | None:
    """A kept result, or None when absent, unreadable or not this run's (it is then simply trained again)."""
    import json
    import math

    try:
        doc = json.loads(path.read_text())
        ok = doc.get("key") == key and math.isfinite(float(doc["val_acc"])) and math.isfinite(float(doc["seconds"]))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return {"val_acc": float(doc["val_acc"]), "seconds": float(doc["seconds"])} if ok else None

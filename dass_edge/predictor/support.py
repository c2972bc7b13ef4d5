"""Support students for ``search --support``: students of the user's own task that were already distilled.

K-shot adaptation (:meth:`HybridPredictor.adapted`) moves the meta-learned predictor toward K labelled
students of the task being searched. The labels a user has are the ``distill.json`` files that
``dass-edge distill`` writes; this module reads them (a distill output folder, or a search run folder whose
``rank*/`` sub-folders were distilled) and checks that they belong to the teacher and data being searched,
since students of another teacher or task would adapt the predictor to the wrong question.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dass_edge.errors import DassEdgeError
from dass_edge.space import Arch
from dass_edge.training.distill_run import LOG_FILE as _LOG

__all__ = ["SupportStudent", "check_support", "read_support"]


@dataclass(frozen=True)
class SupportStudent:
    """One distilled student: its architecture, validation accuracy (%), how and where it was distilled."""

    arch: Arch
    val_acc: float
    teacher_sha256: str | None
    task: str | None
    data_dir: str | None
    path: Path
    recipe: str = "null"  # the KD recipe as sorted JSON: accuracies of different recipes are not comparable


def _logs(path: Path) -> list[Path]:
    if (path / _LOG).is_file():
        return [path / _LOG]
    found = sorted(path.glob(f"rank*/{_LOG}"))
    if not found:
        raise DassEdgeError(f"--support {path}: no {_LOG} there or in its rank*/ folders; pass folders that "
                            "'dass-edge distill' wrote")
    return found


def _read(log: Path) -> SupportStudent:
    try:
        d = json.loads(log.read_text(encoding="utf-8"))
        arch, acc = Arch.from_dict(d["arch"]), float(d["val_acc"])
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError, DassEdgeError):
        raise DassEdgeError(f"--support: {log} is not a readable distill log (arch and val_acc)") from None
    if not math.isfinite(acc) or not 0.0 <= acc <= 100.0:
        raise DassEdgeError(f"--support: {log} has validation accuracy {d['val_acc']!r}, not a percentage")
    return SupportStudent(arch, acc, d.get("teacher_sha256"), d.get("task"), d.get("data_dir"), log.parent,
                          json.dumps(d.get("recipe"), sort_keys=True))


def read_support(paths: Sequence[str | Path]) -> list[SupportStudent]:
    """The distilled students under ``paths`` (distill output folders or search run folders), one per
    architecture (a student distilled twice counts once, with its mean accuracy).

    Raises:
        DassEdgeError: a path that is missing or holds no readable distill log.
    """
    by_arch: dict[Arch, list[SupportStudent]] = {}
    for p in paths:
        path = Path(p)
        if not path.is_dir():
            raise DassEdgeError(f"--support {path}: no such folder")
        for log in _logs(path):
            s = _read(log)
            by_arch.setdefault(s.arch, []).append(s)
    return [SupportStudent(group[0].arch, sum(s.val_acc for s in group) / len(group), group[0].teacher_sha256,
                           group[0].task, group[0].data_dir, group[0].path, group[0].recipe)
            for group in by_arch.values()]


def check_support(students: Sequence[SupportStudent], teacher_sha256: str, task: str | None,
                  data_dir: str | None) -> None:
    """Every support student was distilled from this teacher on this data with one recipe (a 1-epoch smoke run
    and a full run are not comparable), and there are at least two.

    Raises:
        DassEdgeError: the first mismatch, naming its folder.
    """
    for s in students:
        if s.teacher_sha256 is not None and s.teacher_sha256 != teacher_sha256:
            raise DassEdgeError(f"--support {s.path}: that student was distilled from another teacher "
                                "(checksum differs); support students must come from the teacher being searched")
        if s.data_dir is not None and data_dir is not None:
            same = Path(s.data_dir).resolve() == Path(data_dir).resolve()
        else:
            same = s.data_dir is None and data_dir is None and s.task == task
        if not same:
            theirs, ours = s.data_dir or f"task {s.task}", data_dir or f"task {task}"
            raise DassEdgeError(f"--support {s.path}: distilled on {theirs}, but this search is on {ours}")
    recipes = {s.recipe for s in students}
    if len(recipes) > 1:
        epochs = sorted({str((json.loads(r) or {}).get("recipe", {}).get("epochs", "?")) for r in recipes})
        raise DassEdgeError("--support students were distilled with different recipes"
                            + (f" (epochs {', '.join(epochs)})" if len(epochs) > 1 else "")
                            + ": their accuracies are not comparable; pass students of one recipe")
    if len(students) < 2:
        raise DassEdgeError(f"--support needs 2 or more distilled students of different architectures, got "
                            f"{len(students)}")

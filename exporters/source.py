"""What to export: a run folder's distilled student (``runs/<id>[/rank<k>]``) or a checkpoint file.

Resolves the path, loads the student, checks that its recorded arch matches its weights (and the
run's records), and finds the task images it was trained on for calibration and verification.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from dass_edge.errors import DassEdgeError
from dass_edge.models import ResNet, load_checkpoint
from dass_edge.space import Arch

__all__ = ["ExportSource", "load_source", "load_source_task"]

STUDENT_FILE, DISTILL_FILE, SEARCH_FILE = "student.safetensors", "distill.json", "search.json"


@dataclass
class ExportSource:
    """A loaded student and where it came from."""

    checkpoint: Path
    model: ResNet
    meta: dict
    run_dir: Path | None
    rank: int | None
    default_out: Path

    @property
    def arch(self) -> Arch:
        return Arch(tuple(len(s) for s in self.model.spec.stages), self.model.spec.stages)


def _find_checkpoint(path: Path, rank: int) -> tuple[Path, Path | None, int | None]:
    if path.is_file():
        return path, None, None
    if not path.exists():
        raise DassEdgeError(f"{path} does not exist; give a run folder (runs/<id>) or a student checkpoint")
    if (path / STUDENT_FILE).is_file():  # a rank folder itself: runs/<id>/rank<k>
        name = path.name
        k = int(name[4:]) if name.startswith("rank") and name[4:].isdigit() else None
        return path / STUDENT_FILE, path.parent if k is not None else None, k
    if rank < 1:
        raise DassEdgeError(f"--rank must be >= 1, got {rank}")
    candidate = path / f"rank{rank}" / STUDENT_FILE
    if candidate.is_file():
        return candidate, path, rank
    if (path / SEARCH_FILE).is_file():
        top = _read_json(path / SEARCH_FILE).get("top") or []
        if not isinstance(top, list) or rank > len(top):  # a hint to distill that rank would fail too
            count = len(top) if isinstance(top, list) else 0
            raise DassEdgeError(f"--rank {rank} is outside 1..{count} (the run's top students)")
        raise DassEdgeError(
            f"{path} has no distilled student for rank {rank} ({candidate} is missing); "
            f"run 'dass-edge distill {path} --rank {rank}' first"
        )
    raise DassEdgeError(f"{path} is neither a run folder (no search.json or rank*/{STUDENT_FILE}) nor a checkpoint")


def _recorded_arch(meta: dict, where: str) -> Arch | None:
    raw = meta.get("arch")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise DassEdgeError(f"{where} records a malformed arch ({raw!r})")
    return Arch.from_dict(raw)


def _check_arch(actual: Arch, recorded: Arch | None, where: str) -> None:
    if recorded is not None and recorded != actual:
        raise DassEdgeError(
            f"checkpoint/arch mismatch: {where} records arch {recorded.key()} but the weights are {actual.key()}; "
            "re-run distill or pass the matching checkpoint"
        )


def load_source(path: str | Path, rank: int = 1) -> ExportSource:
    """Load the student to export.

    Args:
        path: a run folder (``runs/<id>``), a rank folder (``runs/<id>/rank<k>``) or a checkpoint file.
        rank: which ranked student of a run folder (1 = best).

    Raises:
        DassEdgeError: nothing to export there, an unreadable checkpoint, or an arch that does not
            match the weights / the run's ``distill.json`` / the rank's entry in ``search.json``.
    """
    ckpt, run_dir, k = _find_checkpoint(Path(path), rank)
    if ckpt.suffix != ".safetensors":
        raise DassEdgeError(f"{ckpt}: export needs a dass-edge student checkpoint (.safetensors), got {ckpt.suffix!r}")
    model, meta = load_checkpoint(ckpt)
    src = ExportSource(ckpt, model, meta, run_dir, k, ckpt.parent / "export")
    _check_arch(src.arch, _recorded_arch(meta, "checkpoint metadata"), f"{ckpt}")
    distill = ckpt.parent / DISTILL_FILE
    if distill.is_file():
        record = _read_json(distill)
        _check_arch(src.arch, _recorded_arch(record, str(distill)), str(distill))
    search = run_dir / SEARCH_FILE if run_dir is not None and k is not None else None
    if search is not None and search.is_file():
        top = _read_json(search).get("top") or []
        if len(top) >= k and isinstance(top[k - 1], dict):
            _check_arch(src.arch, _recorded_arch(top[k - 1], f"{search} (rank {k})"), f"{search} (rank {k})")
    return src


def _read_json(path: Path) -> dict:
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DassEdgeError(f"{path} is not readable JSON ({e})") from None
    return record if isinstance(record, dict) else {}


def load_source_task(src: ExportSource, task: str | None = None, data_dir: str | Path | None = None):
    """The images the student was trained on (recorded in its metadata, or given explicitly).

    Raises:
        DassEdgeError: no task or data folder is known, it cannot be loaded, or its classes do not
            match the student's classifier.
    """
    from dass_edge.data import load_task

    if task is None and data_dir is None:
        task, data_dir = src.meta.get("task"), src.meta.get("data_dir")
        if task is None and data_dir is None:
            raise DassEdgeError(
                f"{src.checkpoint} records no task or data folder, so there are no images to calibrate and verify "
                "on; pass --task NAME or --data DIR"
            )
        if task is not None and data_dir is not None:
            data_dir = None  # a built-in task wins; the data folder is informational
    spec = src.model.spec
    data = load_task(task=task, data_dir=data_dir, resolution=spec.resolution)
    if data.num_classes != spec.num_classes:
        raise DassEdgeError(
            f"task {data.name!r} has {data.num_classes} classes but the student predicts {spec.num_classes}; "
            "pass the task it was trained on"
        )
    return data

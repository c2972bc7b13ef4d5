"""Helpers shared by the export tests (no tests here): small students saved as dass-edge checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import perturbed_teacher

from dass_edge.models import remap, save_checkpoint
from dass_edge.space import Arch

#: A small built-in task (8 classes, generated in about a second) and a student that fits the demo teacher shape.
TASK, NUM_CLASSES = "count-dots", 8
ARCH = Arch((1, 2, 1, 1), ((8,), (16, 20), (40,), (128,)))
TEACHER_SHA = "ab" * 32


def teacher(num_classes: int = NUM_CLASSES, resolution: int = 32):
    return perturbed_teacher(num_classes, resolution)


def make_student(path: Path, arch: Arch = ARCH, task: str | None = TASK, meta: dict | None = None,
                 resolution: int = 32) -> Path:
    """Save a remapped student with the metadata a distilled student carries."""
    student = remap(teacher(resolution=resolution), arch).eval()
    record = {"task": task, "data_dir": None, "teacher_sha256": TEACHER_SHA, "arch": arch.to_dict(),
              "val_top1": 12.5, **(meta or {})}
    return save_checkpoint(path, student, record)


def make_run(root: Path, ranks: tuple[int, ...] = (1, 2)) -> Path:
    """A run folder as search + distill leave it: search.json and rank<k>/{student.safetensors,distill.json}."""
    run = root / "runs" / "r1"
    run.mkdir(parents=True)
    (run / "search.json").write_text(json.dumps({"top": [{"arch": ARCH.to_dict()} for _ in ranks]}))
    for k in ranks:
        folder = run / f"rank{k}"
        folder.mkdir()
        make_student(folder / "student.safetensors")
        (folder / "distill.json").write_text(json.dumps({"arch": ARCH.to_dict(), "rank": k}))
    return run


def leftovers(folder: Path) -> list[str]:
    """Hidden staging folders or temp files an export must never leave behind."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*"))

"""A picture of a task: a grid with one row per class."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from dass_edge.data.task import TaskData
from dass_edge.errors import DassEdgeError
from dass_edge.io import atomic_write

__all__ = ["save_sample_grid"]


def save_sample_grid(task: TaskData, out: str | Path, per_class: int = 8, split: str = "train", scale: int = 2) -> Path:
    """Write a PNG grid of ``per_class`` samples (columns) for every class (rows)."""
    if split not in ("train", "val", "test"):
        raise DassEdgeError(f"unknown split {split!r}; choose train, val or test")
    if per_class < 1:
        raise DassEdgeError("--per-class must be >= 1")
    data = task.split(split)
    r = task.resolution
    gap = 2
    grid = np.full((task.num_classes * (r + gap), per_class * (r + gap), 3), 255, dtype=np.uint8)
    labels = data.labels.numpy()
    for k in range(task.num_classes):
        idx = np.flatnonzero(labels == k)[:per_class]
        for j, i in enumerate(idx):
            grid[k * (r + gap) : k * (r + gap) + r, j * (r + gap) : j * (r + gap) + r] = (
                data.images[i].numpy().transpose(1, 2, 0)
            )
    img = Image.fromarray(grid).resize((grid.shape[1] * scale, grid.shape[0] * scale), Image.Resampling.NEAREST)
    return atomic_write(Path(out), lambda p: img.save(p, format="PNG"))

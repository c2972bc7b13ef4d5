"""Data: built-in offline tasks and user image folders, both as in-memory :class:`TaskData`."""

from __future__ import annotations

from pathlib import Path

from dass_edge.data.builtin import builtin_tasks, load_builtin
from dass_edge.data.imagefolder import load_image_folder
from dass_edge.data.task import Split, TaskData, iterate_batches, normalize
from dass_edge.errors import DassEdgeError

__all__ = ["DEFAULT_TASK", "Split", "TaskData", "builtin_tasks", "iterate_batches", "load_task", "normalize",
           "task_summaries"]

#: The built-in task of the demo teacher (the default of every command).
DEFAULT_TASK = "glyph-latin-upper"


def load_task(task: str | None = None, data_dir: str | Path | None = None, resolution: int = 32) -> TaskData:
    """A built-in task by name, or an image folder; with neither, the default built-in task."""
    if task is not None and data_dir is not None:
        raise DassEdgeError("give either a built-in task or a data folder, not both")
    if data_dir is not None:
        return load_image_folder(data_dir, resolution)
    return load_builtin(task or DEFAULT_TASK, resolution)


def task_summaries(resolution: int = 32) -> list[dict]:
    """One row per built-in task, without generating any images."""
    return [
        {"name": t.name, "num_classes": t.num_classes, "resolution": resolution, "train": t.split_size("train"),
         "val": t.split_size("val"), "test": t.split_size("test"), "description": t.description,
         "flip_ok": t.flip_ok}
        for t in builtin_tasks().values()
    ]

"""Teacher training: build a family model for a task, train it, write a checkpoint with its accuracies."""

from __future__ import annotations

from pathlib import Path

from dass_edge import __version__
from dass_edge.data import TaskData
from dass_edge.errors import DassEdgeError
from dass_edge.io import file_sha256
from dass_edge.models.checkpoint import load_checkpoint, save_checkpoint
from dass_edge.models.resnet import ResNet, build_model
from dass_edge.spec import ModelSpec
from dass_edge.training.loop import ProgressFn, Recipe, evaluate, train
from dass_edge.validate import check_output_file, finite_or_none

__all__ = ["DEMO_TEACHER_WIDTHS", "DEMO_TEACHER_DEPTHS", "MIN_TEACHER_SKILL", "chance_accuracy", "teacher_spec_for",
           "teacher_learned", "train_teacher", "load_teacher", "load_teacher_and_sha256", "demo_teacher_path"]

DEMO_TEACHER_WIDTHS = (16, 32, 64, 128)
DEMO_TEACHER_DEPTHS = (2, 2, 2, 2)
#: A teacher must get at least this share of the way from chance to 100% validation accuracy to count as trained.
#: One that did not learn (a ResNet-34-shaped ImageNet-stem teacher on 1,800 chess-glyph images at 64 px stayed at
#: 11%, chance 8.3%) only passes noise on: students distilled from it all land near chance.
MIN_TEACHER_SKILL = 0.25


def chance_accuracy(num_classes: int) -> float:
    """Accuracy (percent) of guessing uniformly: the floor a teacher's skill is measured from."""
    return 100.0 / num_classes


def teacher_learned(val_acc: float, num_classes: int) -> bool:
    """Whether a teacher's validation accuracy (percent) is at least :data:`MIN_TEACHER_SKILL` above chance."""
    chance = chance_accuracy(num_classes)
    return val_acc >= chance + MIN_TEACHER_SKILL * (100.0 - chance)


def teacher_spec_for(data: TaskData, widths: tuple[int, ...] = DEMO_TEACHER_WIDTHS,
                     depths: tuple[int, ...] = DEMO_TEACHER_DEPTHS, stem: str = "small") -> ModelSpec:
    """A uniform-width teacher spec sized for ``data`` (classes, names, resolution, normalization)."""
    mean, std = data.mean_std
    return ModelSpec.uniform(tuple(widths), tuple(depths), stem=stem, num_classes=data.num_classes,
                             resolution=data.resolution, mean=mean, std=std, class_names=data.class_names)


def train_teacher(data: TaskData, out: str | Path, recipe: Recipe, spec: ModelSpec | None = None,
                  progress: ProgressFn | None = None, device: str = "cpu") -> dict:
    """Train a teacher and save it (safetensors) with its validation and test accuracy.

    Resumable: a ``<out>.partial.pt`` file holds the state after each epoch.
    Returns the metadata written into the checkpoint.
    """
    out = check_output_file(out, "teacher output", suffix=".safetensors")  # before an epoch is spent
    recipe.validate()
    spec = spec or teacher_spec_for(data)
    if spec.num_classes != data.num_classes:
        raise DassEdgeError(f"teacher has {spec.num_classes} classes but task {data.name} has {data.num_classes}")
    import torch

    torch.manual_seed(recipe.seed)
    model = build_model(spec)
    result = train(model, data, recipe, mean=spec.mean, std=spec.std,
                   resume_path=out.with_name(out.name + ".partial.pt"), progress=progress, device=device)
    test_acc = evaluate(result.model, data.test, spec.mean, spec.std)
    meta = {
        "kind": "teacher", "task": data.name if data.source == "builtin" else None,
        "data_dir": None if data.source == "builtin" else data.source, "val_acc": round(result.best_val_acc, 3),
        "final_val_acc": round(result.final_val_acc, 3), "test_acc": finite_or_none(round(test_acc, 3)),
        "best_epoch": result.best_epoch, "recipe": recipe.__dict__, "history": result.history,
        "train_seconds": round(result.seconds, 1), "images_per_second": round(result.images_per_second, 1),
        "dass_edge_version": __version__,
    }
    save_checkpoint(out, result.model, meta)
    return meta


def demo_teacher_path() -> Path:
    """The shipped demo teacher: what every command uses when no ``--teacher`` is given."""
    from dass_edge.resources import asset_path

    path = asset_path("demo_teacher.safetensors")
    if not path.is_file():
        raise DassEdgeError("the demo teacher is missing from this installation; reinstall dass-edge")
    return path


def load_teacher(path: str | Path | None = None) -> tuple[ResNet, dict]:
    """Load a teacher checkpoint, or the shipped demo teacher when ``path`` is None."""
    return load_checkpoint(path if path is not None else demo_teacher_path())


def load_teacher_and_sha256(path: str | Path | None = None) -> tuple[ResNet, dict, str]:
    """:func:`load_teacher` plus the file's sha256, which names the teacher in search runs, distillation
    records and the teacher-output cache (so a changed file is never mistaken for the one a run used)."""
    src = path if path is not None else demo_teacher_path()
    model, meta = load_checkpoint(src)
    return model, meta, file_sha256(src)

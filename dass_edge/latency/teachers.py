"""Which teacher a table is for: a checkpoint's spec, a registered shape, or the built-in default."""

from __future__ import annotations

from pathlib import Path

from dass_edge.errors import DassEdgeError
from dass_edge.spec import ModelSpec

__all__ = ["DEFAULT_TEACHER", "default_teacher_spec", "teacher_spec"]

#: Shape of the demo teacher (used until/unless the shipped checkpoint says otherwise).
DEFAULT_TEACHER = ("resnet_edge_s", 26)
_DEMO = "demo_teacher.safetensors"


def _spec_from_safetensors(path: Path) -> ModelSpec:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # safetensors raises its own types for corrupt headers
        raise DassEdgeError(f"{path} is not a readable safetensors file ({type(e).__name__})") from None
    if "dass_edge.spec" not in meta:
        raise DassEdgeError(f"{path} has no dass-edge model spec in its metadata; was it written by dass-edge?")
    try:
        return ModelSpec.from_json(meta["dass_edge.spec"])
    except DassEdgeError as e:
        raise DassEdgeError(f"{path}: {e}") from None


def default_teacher_spec() -> ModelSpec:
    """The shipped demo teacher's spec (read from its metadata only), else its registered shape."""
    from dass_edge.models import model_spec
    from dass_edge.resources import asset_path

    demo = asset_path(_DEMO)
    if demo.is_file():
        return _spec_from_safetensors(demo)
    name, classes = DEFAULT_TEACHER
    return model_spec(name, num_classes=classes)


def teacher_spec(teacher: str | Path | None) -> ModelSpec:
    """``None`` -> default teacher; a checkpoint file -> its spec; a registered model name -> its shape.

    Raises:
        DassEdgeError: neither an existing checkpoint nor a known model name.
    """
    if teacher is None:
        return default_teacher_spec()
    from dass_edge.models import load_checkpoint, model_spec
    from dass_edge.models.resnet import is_model

    path = Path(teacher)
    if path.is_file():
        if path.suffix == ".safetensors":
            return _spec_from_safetensors(path)
        return load_checkpoint(path)[0].spec
    if is_model(str(teacher)):
        return model_spec(str(teacher))
    raise DassEdgeError(f"--teacher {teacher}: no such checkpoint file, and not a registered model name")

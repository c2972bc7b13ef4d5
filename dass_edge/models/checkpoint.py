"""Checkpoints: safetensors with the model spec in the metadata; torchvision-style ``.pth`` too.

safetensors files carry ``dass_edge.spec`` (the :class:`ModelSpec` as JSON) and ``dass_edge.meta``
(free-form JSON: accuracies, task, recipe). ``.pth``/``.pt`` state dicts are loaded with
``torch.load(weights_only=True)`` and their spec is inferred from tensor shapes, so a torchvision
ResNet-18/34 checkpoint works as a teacher without torchvision.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import torch

from dass_edge.errors import DassEdgeError
from dass_edge.io import atomic_write
from dass_edge.models.resnet import ResNet, build_model
from dass_edge.spec import ModelSpec
from dass_edge.validate import check_finite_record

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "load_checkpoint", "non_finite_count", "save_checkpoint",
           "spec_from_state_dict"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_SPEC_KEY, _META_KEY = "dass_edge.spec", "dass_edge.meta"


def save_checkpoint(path: str | Path, model: ResNet, meta: dict | None = None) -> Path:
    """Write ``model`` and its spec (plus ``meta``) to a safetensors file, atomically.

    Raises:
        DassEdgeError: a weight or a metadata figure is NaN/infinite (a diverged run is never saved).
    """
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    bad = non_finite_count(tensors)
    if bad:
        raise DassEdgeError(f"refusing to write {path}: {bad} weights are NaN or infinite (the run diverged)")
    check_finite_record(meta or {}, f"{path} metadata")
    metadata = {"format": "pt", _SPEC_KEY: model.spec.to_json(),
                _META_KEY: json.dumps(meta or {}, sort_keys=True, allow_nan=False)}
    return atomic_write(path, lambda p: save_file(tensors, str(p), metadata=metadata))


def non_finite_count(state: dict[str, torch.Tensor]) -> int:
    """How many floating-point values of a state dict are NaN or infinite."""
    return sum(int((~torch.isfinite(v)).sum()) for v in state.values() if v.is_floating_point())


def load_checkpoint(
    path: str | Path, *, resolution: int | None = None, class_names: tuple[str, ...] | None = None
) -> tuple[ResNet, dict]:
    """Load a model (eval mode) and its metadata from ``.safetensors`` or a ``.pth``/``.pt`` state dict.

    Args:
        resolution, class_names: for ``.pth`` files, which do not record them.

    Raises:
        DassEdgeError: the file is missing, unreadable, or not a checkpoint of this model family.
    """
    path = Path(path)
    if not path.is_file():
        raise DassEdgeError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        spec, meta, shapes = _read_safetensors_header(path)
        _check_shapes(path, spec, shapes)  # before a tensor is read or a module allocated
        state = _read_safetensors_tensors(path)
    elif path.suffix in (".pth", ".pt"):
        state = _read_pth(path)
        spec = spec_from_state_dict(state, resolution=resolution, class_names=class_names)
        _check_shapes(path, spec, {k: tuple(v.shape) for k, v in state.items()})
        meta = {"source": "state_dict"}
    else:
        raise DassEdgeError(f"{path}: unknown checkpoint type {path.suffix!r}; use .safetensors, .pth or .pt")
    bad = non_finite_count(state)
    if bad:
        raise DassEdgeError(f"{path} holds {bad} NaN or infinite weights (saved from a diverged run); retrain it")
    model = build_model(spec, init_weights=False)  # load_state_dict(strict=True) sets every tensor
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else str(e)
        raise DassEdgeError(f"{path}: weights do not match the recorded model spec ({first})") from None
    return model.eval(), meta


def _check_shapes(path: Path, spec: ModelSpec, shapes: dict[str, tuple[int, ...]]) -> None:
    """Compare the stored tensor names and shapes with the spec's, on the ``meta`` device (allocates nothing).

    A hostile spec (a stage width of 10,000,000) is refused here instead of building gigabytes of weights.
    """
    for s, blocks in enumerate(spec.stages):  # quick look first (torchvision names), so a big claim fails fast
        for b, width in enumerate(blocks):
            shape = shapes.get(f"layer{s + 1}.{b}.conv1.weight")
            if shape is None or not shape or shape[0] != width:
                raise DassEdgeError(f"{path}: weights do not match the recorded model spec (stage {s + 1} block "
                                    f"{b + 1} should be {width} wide); re-create the checkpoint")
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in build_model(spec, init_weights=False).state_dict().items()}
    missing, extra = sorted(set(expected) - set(shapes)), sorted(set(shapes) - set(expected))
    if missing or extra:
        what = f"missing {missing[0]}" if missing else f"unexpected {extra[0]}"
        raise DassEdgeError(f"{path}: weights do not match the recorded model spec ({what}); re-create the checkpoint")
    for k, shape in expected.items():
        if tuple(shapes[k]) != shape:
            raise DassEdgeError(f"{path}: weights do not match the recorded model spec ({k} is "
                                f"{list(shapes[k])}, the spec needs {list(shape)}); re-create the checkpoint")


def _read_safetensors_header(path: Path) -> tuple[ModelSpec, dict, dict[str, tuple[int, ...]]]:
    """Spec, metadata and tensor shapes from the header only (no tensor data is read)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for corrupt headers/data
        raise DassEdgeError(f"{path} is not a readable safetensors file ({type(e).__name__}); re-export it") from None
    if _SPEC_KEY not in metadata:
        raise DassEdgeError(f"{path} has no dass-edge model spec in its metadata; was it written by dass-edge?")
    try:
        spec = ModelSpec.from_json(metadata[_SPEC_KEY])
    except DassEdgeError as e:
        raise DassEdgeError(f"{path}: {e}") from None
    try:
        meta = json.loads(metadata.get(_META_KEY, "{}"))
    except json.JSONDecodeError:
        raise DassEdgeError(f"{path}: metadata is not valid JSON") from None
    if not isinstance(meta, dict):
        raise DassEdgeError(f"{path}: metadata is not a JSON object")
    return spec, meta, shapes


def _read_safetensors_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:
        raise DassEdgeError(f"{path} is not a readable safetensors file ({type(e).__name__}); re-export it") from None


def _read_pth(path: Path) -> dict[str, torch.Tensor]:
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the one-line error below says it all
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle/zip errors, or objects refused by weights_only
        raise DassEdgeError(f"{path} is not a loadable weights-only state dict ({type(e).__name__})") from None
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise DassEdgeError(f"{path} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def spec_from_state_dict(
    state: dict[str, torch.Tensor], *, resolution: int | None = None, class_names: tuple[str, ...] | None = None
) -> ModelSpec:
    """Infer the spec of a torchvision-named BasicBlock ResNet from tensor shapes."""
    if "conv1.weight" not in state or "fc.weight" not in state:
        raise DassEdgeError("state dict has no conv1/fc weights; it is not a torchvision-style ResNet")
    if any(k.endswith("conv3.weight") for k in state):
        raise DassEdgeError(
            "state dict is a Bottleneck ResNet (ResNet-50 and up); dass-edge supports BasicBlock ResNets"
        )
    if state["conv1.weight"].ndim != 4 or state["fc.weight"].ndim != 2:
        raise DassEdgeError("state dict conv1/fc weights have the wrong number of dimensions for a ResNet")
    stem_w, in_chans, k, _ = state["conv1.weight"].shape
    if k not in (3, 7):
        raise DassEdgeError(f"stem kernel {k}x{k} is not supported (3x3 small-image or 7x7 ImageNet stem)")
    stem = "imagenet" if k == 7 else "small"
    blocks: dict[int, dict[int, int]] = {}
    for key, v in state.items():
        m = re.fullmatch(r"layer(\d)\.(\d+)\.conv1\.weight", key)
        if m and v.ndim == 4:
            blocks.setdefault(int(m[1]), {})[int(m[2])] = int(v.shape[0])
    if sorted(blocks) != [1, 2, 3, 4]:
        raise DassEdgeError(f"expected stages layer1..layer4, found {[f'layer{s}' for s in sorted(blocks)]}")
    stages = [[blocks[s][b] for b in sorted(blocks[s])] for s in (1, 2, 3, 4)]
    num_classes = int(state["fc.weight"].shape[0])
    imagenet = stem == "imagenet"
    return ModelSpec(
        stages=tuple(tuple(s) for s in stages),
        stem=stem,
        num_classes=num_classes,
        resolution=resolution or (224 if imagenet else 32),
        in_chans=int(in_chans),
        mean=IMAGENET_MEAN if imagenet else (0.5,) * int(in_chans),
        std=IMAGENET_STD if imagenet else (0.25,) * int(in_chans),
        class_names=tuple(class_names or ()),
        stem_width=int(stem_w),
    )

"""Write the model files a backend measures: ONNX (fp32/fp16/Q-DQ int8) or torch.export programs.

Which one is decided by the backend's registered file suffix (:mod:`dass_edge.latency.runners.registry`),
and the Q/DQ activation type by its INT8 flavour, so a new backend that measures ONNX needs nothing here.
Loader-style: :class:`EntryArtifact` / :class:`StudentArtifact` describe *what* to build and are
called with a destination path, so the profiler, the fidelity check and tests build files the
same way and only when they are missing.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from dass_edge.errors import DassEdgeError
from dass_edge.io import atomic_write
from dass_edge.latency.entries import Entry
from dass_edge.latency.graphs import entry_model, spec_model
from dass_edge.latency.runners import RunnerError, get_backend, list_backends
from dass_edge.spec import ModelSpec

__all__ = ["MODEL_FORMATS", "EntryArtifact", "OverheadArtifact", "StudentArtifact", "check_precision",
           "quantize_qdq"]

#: What the model files of each suffix are (recorded in a table's settings).
MODEL_FORMATS = {".onnx": "ONNX opset {opset}, batch norm folded", ".pt2": "torch.export programs"}


@contextlib.contextmanager
def _quiet_root_logger():
    """onnxruntime.quantization logs advice through the root logger; keep the CLI output clean."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def quantize_qdq(model: onnx.ModelProto, dst: Path, backend: str) -> None:
    """Static Q/DQ INT8 with per-channel int8 weights. Activations: uint8 for CPU backends (onnxruntime's
    fast CPU path here), symmetric int8 for the ``tensorrt`` INT8 flavour (TensorRT only takes symmetric Q/DQ)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]

    class _Random(CalibrationDataReader):
        def __init__(self) -> None:
            self._rng, self._left = np.random.default_rng(0), 4

        def get_next(self):
            if self._left == 0:
                return None
            self._left -= 1
            return {"x": self._rng.standard_normal(shape).astype(np.float32)}

    trt = get_backend(backend).int8 == "tensorrt"
    with tempfile.TemporaryDirectory() as tmp, _quiet_root_logger():
        src = Path(tmp) / "fp32.onnx"
        onnx.save(model, str(src))
        quantize_static(str(src), str(dst), _Random(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8 if trt else QuantType.QUInt8, weight_type=QuantType.QInt8,
                        extra_options={"ActivationSymmetric": trt, "WeightSymmetric": True})


def _write_onnx(model: onnx.ModelProto, path: Path, precision: str, backend: str) -> None:
    if precision == "int8":
        atomic_write(path, lambda p: quantize_qdq(model, p, backend))
    else:
        atomic_write(path, lambda p: p.write_bytes(model.SerializeToString()))


def _write_torch(module, input_shape: tuple[int, ...], path: Path) -> None:
    import torch

    module = module.eval()
    with torch.no_grad():
        program = torch.export.export(module, (torch.randn(input_shape),))
    buf = io.BytesIO()  # torch warns about files not ending in .pt2, and atomic_write's temp file does not
    torch.export.save(program, buf)
    atomic_write(path, lambda p: p.write_bytes(buf.getvalue()))


def _is_torch(backend: str) -> bool:
    """Whether ``backend`` measures torch.export programs (else ONNX)."""
    suffix = get_backend(backend).suffix
    if suffix not in MODEL_FORMATS:
        raise DassEdgeError(f"backend {backend!r} measures {suffix} files, which dass-edge cannot write")
    return suffix == ".pt2"


def _entry_module(entry: Entry):
    from torch import nn

    from dass_edge.models.layers import BasicBlock, make_stem

    if entry.kind == "stem":
        return nn.Sequential(*make_stem(entry.stem, entry.in_ch, entry.out_ch).values())
    if entry.kind == "block":
        return BasicBlock(entry.in_ch, entry.out_ch, entry.stride)
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(entry.in_ch, entry.out_ch))


class _BackendFile:
    """What an artifact's file is named after: its backend's suffix (``.onnx``, ``.pt``)."""

    backend: str

    @property
    def suffix(self) -> str:
        return get_backend(self.backend).suffix


@dataclass(frozen=True)
class EntryArtifact(_BackendFile):
    """One LUT entry as a file for ``backend`` at ``precision``."""

    entry: Entry
    backend: str
    precision: str

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.entry.input_shape

    def __call__(self, path: Path) -> Path:
        if _is_torch(self.backend):
            _write_torch(_entry_module(self.entry), self.entry.input_shape, path)
        else:
            _write_onnx(entry_model(self.entry, "fp32" if self.precision == "int8" else self.precision), path,
                        self.precision, self.backend)
        return path


@dataclass(frozen=True)
class StudentArtifact(_BackendFile):
    """A whole student (for the fidelity check) as a file for ``backend`` at ``precision``."""

    spec: ModelSpec
    batch: int
    backend: str
    precision: str

    @property
    def input_shape(self) -> tuple[int, ...]:
        r = self.spec.resolution
        return (self.batch, self.spec.in_chans, r, r)

    def __call__(self, path: Path) -> Path:
        if _is_torch(self.backend):
            from dass_edge.models import build_model

            _write_torch(build_model(self.spec), self.input_shape, path)
        else:
            precision = "fp32" if self.precision == "int8" else self.precision
            _write_onnx(spec_model(self.spec, self.batch, precision), path, self.precision, self.backend)
        return path


@dataclass(frozen=True)
class OverheadArtifact:
    """The smallest possible model (one Relu on one value): its latency is the per-call overhead."""

    backend: str
    precision: str
    input_shape: tuple[int, ...] = (1, 1)

    @property
    def suffix(self) -> str:
        return get_backend(self.backend).suffix

    def __call__(self, path: Path) -> Path:
        if _is_torch(self.backend):
            from torch import nn

            _write_torch(nn.ReLU(), self.input_shape, path)
            return path
        from onnx import TensorProto, helper

        elem = TensorProto.FLOAT16 if self.precision == "fp16" else TensorProto.FLOAT
        graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "overhead",
                                  [helper.make_tensor_value_info("x", elem, list(self.input_shape))],
                                  [helper.make_tensor_value_info("y", elem, list(self.input_shape))])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="dass-edge")
        model.ir_version = 8
        atomic_write(path, lambda p: p.write_bytes(model.SerializeToString()))
        return path


def check_precision(backend: str, precision: str) -> None:
    """Raise a one-line error unless ``backend`` is registered and measures ``precision``."""
    try:
        b = get_backend(backend)
    except RunnerError as e:
        raise DassEdgeError(str(e)) from None
    if precision not in b.precisions:
        others = ", ".join(o.name for o in list_backends() if precision in o.precisions) or "none"
        raise DassEdgeError(f"the {backend} backend measures {' or '.join(b.precisions)} models; "
                            f"use {others} for {precision}")

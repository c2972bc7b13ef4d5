"""Exporters (installed as ``dass_edge.exporters``): ONNX, FP16, INT8 Q/DQ and TensorRT engine builders + verification.

Each step is a loader (a deferred callable, Polygraphy-style) that takes a value or another loader::

    fp32 = OnnxFromTorch(model, "s.onnx", resolution=32)
    int8 = QdqFromOnnx(fp32, "s.int8.onnx", calibration_images, quant_config("x86"))
    Comparator.run([TorchRunner(model, name="pytorch"), OrtRunner(int8(), threads=None)], images, labels)

Runners and the TensorRT builder are the latency ones (:mod:`dass_edge.latency.runners`; ``trt_build``
is self-contained so it can be copied to a device). ``tensorrt`` is imported only when an engine is
built or run.
"""

from __future__ import annotations

from dass_edge.exporters.base import BaseLoader, lazy_import, resolve
from dass_edge.exporters.compare import FP32_TOLERANCE, Comparator, Comparison, fp16_tolerance
from dass_edge.exporters.fp16 import Fp16FromOnnx
from dass_edge.exporters.int8 import CALIBRATION_METHODS, QUANT_TARGETS, QdqFromOnnx, QuantConfig, quant_config
from dass_edge.exporters.onnx_export import OnnxFromTorch, read_metadata
from dass_edge.exporters.tensorrt import EngineFromOnnx, build_commands, tensorrt_availability

__all__ = [
    "CALIBRATION_METHODS", "FP32_TOLERANCE", "QUANT_TARGETS", "BaseLoader", "Comparator", "Comparison",
    "EngineFromOnnx", "Fp16FromOnnx", "OnnxFromTorch", "QdqFromOnnx", "QuantConfig", "build_commands",
    "fp16_tolerance", "lazy_import", "quant_config", "read_metadata", "resolve", "tensorrt_availability",
]

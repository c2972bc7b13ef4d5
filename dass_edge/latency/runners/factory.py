"""Pick and configure a runner from a profile's backend settings (plain dict, so the agent can use it)."""

from __future__ import annotations

from typing import Any

from .base import LatencyRunner, RunnerError
from .onnxrt import OrtRunner
from .tensorrt import TrtRunner
from .torch_runner import TorchRunner

__all__ = ["BACKENDS", "ARTIFACT_SUFFIX", "make_runner"]

BACKENDS = ("onnxruntime", "torch", "tensorrt")
#: The file format each backend measures: ONNX for onnxruntime/TensorRT, a torch.export program for torch.
ARTIFACT_SUFFIX = {"onnxruntime": ".onnx", "tensorrt": ".onnx", "torch": ".pt2"}


def make_runner(settings: dict[str, Any], artifact: str, input_shape: tuple[int, ...] | None = None) -> LatencyRunner:
    """A runner for ``artifact`` configured by ``settings`` (``backend``, ``threads``, ``batch``, ...).

    Raises:
        RunnerError: unknown backend, or a torch runner without an input shape.
    """
    backend = settings.get("backend")
    batch = int(settings.get("batch", 1))
    if backend == "onnxruntime":
        providers = tuple(settings.get("providers") or ("CPUExecutionProvider",))
        return OrtRunner(artifact, threads=int(settings.get("threads", 1)), providers=providers, batch=batch)
    if backend == "tensorrt":
        return TrtRunner(artifact, precision=str(settings.get("precision", "fp16")), batch=batch,
                         workspace_mb=int(settings.get("workspace_mb", 1024)))
    if backend == "torch":
        if input_shape is None:
            raise RunnerError("the torch runner needs the input shape of each model")
        return TorchRunner(artifact, tuple(input_shape), device=str(settings.get("device", "cpu")),
                           precision=str(settings.get("precision", "fp32")), threads=int(settings.get("threads", 1)),
                           cuda_graph=bool(settings.get("cuda_graph", False)))
    raise RunnerError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")

"""TensorRT for export: is it usable here, build an engine (loader), the commands to build one on a device.

The builder and the runner are the latency ones (:mod:`dass_edge.latency.runners.trt_build`,
:class:`dass_edge.latency.runners.TrtRunner`), so an engine is built and run the same way whether it is
profiled or exported, on TensorRT 8.5 (JetPack 5) and 10 alike. ``tensorrt`` and its CUDA binding are
optional extras (``pip install 'dass-edge[tensorrt]'``) imported only when a step needs them.
"""

from __future__ import annotations

import ctypes
import importlib.util
import shlex
from dataclasses import dataclass
from pathlib import Path

from dass_edge.exporters.base import BaseLoader, lazy_import, resolve
from dass_edge.exporters.onnx_export import INPUT_NAME

from dass_edge.errors import DassEdgeError
from dass_edge.latency.runners.trt_build import strongly_typed

__all__ = ["EngineFromOnnx", "TrtAvailability", "build_commands", "tensorrt_availability"]


@dataclass(frozen=True)
class TrtAvailability:
    """Whether an engine can be built on this machine, and if not, why (one line for the user)."""

    ok: bool
    reason: str
    version: str | None = None


def _cuda_device_count() -> int:
    """GPUs visible through the CUDA driver (0 when there is no ``libcuda``), without any Python package."""
    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        count = ctypes.c_int(0)
        if lib.cuInit(0) != 0 or lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return 0
        return int(count.value)
    return 0


def tensorrt_availability() -> TrtAvailability:
    """Check for the ``tensorrt`` package and a CUDA GPU; never raises."""
    if importlib.util.find_spec("tensorrt") is None:
        return TrtAvailability(False, "TensorRT is not installed here (pip install 'dass-edge[tensorrt]' on a GPU box)")
    try:
        import tensorrt as trt

        version = str(trt.__version__)
    except Exception as e:  # native libraries missing or mismatched
        return TrtAvailability(False, f"TensorRT is installed but does not load ({type(e).__name__}: {e})")
    if _cuda_device_count() == 0:
        return TrtAvailability(False, "no CUDA GPU is visible here (TensorRT needs one to build an engine)", version)
    return TrtAvailability(True, f"TensorRT {version} with a CUDA GPU", version)


class EngineFromOnnx(BaseLoader[Path]):
    """Build an engine from ``source`` (INT8 from Q/DQ, or FP16 from an FP16 ONNX) at ``path``.

    Args:
        precision: what the ONNX holds; TensorRT 9+ reads it from the model (strongly typed), 8.5 needs
            the matching builder flags.

    Raises:
        DassEdgeError: TensorRT is missing, or parsing/building fails.
    """

    def __init__(self, source: str | Path | BaseLoader[Path], path: str | Path, opt_batch: int = 1,
                 max_batch: int = 32, precision: str = "fp16") -> None:
        self.source, self.path, self.opt_batch, self.max_batch = source, Path(path), opt_batch, max_batch
        self.precision = precision

    def call_impl(self) -> Path:
        lazy_import("tensorrt", extra="tensorrt", why="needed to build an engine")
        from dass_edge.latency.runners.trt_build import TrtBuildError, write_engine

        try:
            write_engine(str(resolve(self.source)), str(self.path), self.precision, min_batch=1,
                         opt_batch=self.opt_batch, max_batch=max(self.opt_batch, self.max_batch))
        except TrtBuildError as e:
            raise DassEdgeError(str(e)) from None
        return self.path


#: ``trtexec`` precision flags for TensorRT < 9, which has no ``--stronglyTyped``.
_TRTEXEC_FLAGS = {"fp32": "", "fp16": "--fp16 ", "int8": "--int8 --fp16 "}


def build_commands(onnx_name: str, engine_name: str, resolution: int, in_chans: int = 3, opt_batch: int = 1,
                   max_batch: int = 32, precision: str = "fp16", trt_version: str | None = None) -> dict[str, str]:
    """The exact commands that build the engine on the device, run in the folder holding the ONNX file.

    The python form runs ``trt_build.py`` (the self-contained builder, copied next to the ONNX), which
    picks strongly typed or flag-based building from the device's TensorRT. ``trtexec`` flags depend on
    the version: ``--stronglyTyped`` on TensorRT 9+ (and when the version is unknown), precision flags
    on 8.x (JetPack 5 ships 8.5).
    """
    shape = f"{in_chans}x{resolution}x{resolution}"
    q = shlex.quote
    typing = "--stronglyTyped " if trt_version is None or strongly_typed(trt_version) else _TRTEXEC_FLAGS[precision]
    trtexec = (f"trtexec --onnx={q(onnx_name)} --saveEngine={q(engine_name)} {typing}"
               f"--minShapes={INPUT_NAME}:1x{shape} --optShapes={INPUT_NAME}:{opt_batch}x{shape} "
               f"--maxShapes={INPUT_NAME}:{max(opt_batch, max_batch)}x{shape}")
    python = (f"python3 trt_build.py --onnx {q(onnx_name)} --engine {q(engine_name)} --precision {precision} "
              f"--opt-batch {opt_batch} --max-batch {max(opt_batch, max_batch)}")
    return {"trtexec": trtexec, "python": python}

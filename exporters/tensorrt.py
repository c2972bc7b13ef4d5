"""TensorRT: is it usable here, build an engine (loader), the commands to build one on a device, a runner.

``tensorrt`` and ``pycuda`` are optional extras (``pip install 'dass-edge[tensorrt]'``) imported only
when a step needs them; everything else in dass-edge works without them.
"""

from __future__ import annotations

import ctypes
import importlib.util
import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from dass_edge.exporters.base import BaseLoader, lazy_import, resolve
from dass_edge.exporters.onnx_export import INPUT_NAME

from dass_edge.errors import DassEdgeError

__all__ = ["EngineFromOnnx", "TrtAvailability", "TrtRunner", "build_commands", "tensorrt_availability"]


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
    """Build a strongly typed engine from ``source`` (INT8 from Q/DQ, or FP16 from an FP16 ONNX) at ``path``.

    Raises:
        DassEdgeError: TensorRT is missing, or parsing/building fails.
    """

    def __init__(self, source: str | Path | BaseLoader[Path], path: str | Path, opt_batch: int = 1,
                 max_batch: int = 32) -> None:
        self.source, self.path, self.opt_batch, self.max_batch = source, Path(path), opt_batch, max_batch

    def call_impl(self) -> Path:
        lazy_import("tensorrt", extra="tensorrt", why="needed to build an engine")
        from dass_edge.exporters.trt_build import TrtBuildError, build_engine

        try:
            build_engine(str(resolve(self.source)), str(self.path), min_batch=1, opt_batch=self.opt_batch,
                         max_batch=max(self.opt_batch, self.max_batch))
        except TrtBuildError as e:
            raise DassEdgeError(str(e)) from None
        return self.path


def build_commands(onnx_name: str, engine_name: str, resolution: int, in_chans: int = 3, opt_batch: int = 1,
                   max_batch: int = 32) -> dict[str, str]:
    """The exact commands that build the engine on the device, run in the folder holding the ONNX file.

    The python form runs ``trt_build.py`` (this package's self-contained builder, copied next to the ONNX).
    """
    shape = f"{in_chans}x{resolution}x{resolution}"
    q = shlex.quote
    trtexec = (f"trtexec --onnx={q(onnx_name)} --saveEngine={q(engine_name)} --stronglyTyped "
               f"--minShapes={INPUT_NAME}:1x{shape} --optShapes={INPUT_NAME}:{opt_batch}x{shape} "
               f"--maxShapes={INPUT_NAME}:{max(opt_batch, max_batch)}x{shape}")
    python = (f"python3 trt_build.py --onnx {q(onnx_name)} --engine {q(engine_name)} "
              f"--opt-batch {opt_batch} --max-batch {max(opt_batch, max_batch)}")
    return {"trtexec": trtexec, "python": python}


class TrtRunner:
    """Runs a serialized engine with pycuda buffers (for parity and top-1 where the engine was built).

    Usable as a context manager, like the other runners: ``with TrtRunner(path) as r: r.infer(x)``.
    """

    name = "tensorrt"

    def __init__(self, engine: str | Path | BaseLoader[Path]) -> None:
        self.engine_source = engine
        self._ctx = None

    def __enter__(self) -> TrtRunner:
        self.activate()
        return self

    def __exit__(self, *exc: object) -> None:
        self.deactivate()

    def activate(self) -> None:
        trt = lazy_import("tensorrt", extra="tensorrt", why="needed to run an engine")
        lazy_import("pycuda.autoinit", extra="tensorrt", why="needed for TensorRT buffers")
        self._cuda = lazy_import("pycuda.driver", extra="tensorrt")
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self._engine = runtime.deserialize_cuda_engine(Path(resolve(self.engine_source)).read_bytes())
        if self._engine is None:
            raise DassEdgeError("TensorRT could not load the engine (built with another TensorRT version or GPU?)")
        self._ctx = self._engine.create_execution_context()
        self._stream = self._cuda.Stream()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        self._input = next(n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        self._output = next(n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)

    def infer(self, x: np.ndarray) -> np.ndarray:
        cuda = self._cuda
        x = np.ascontiguousarray(x, dtype=np.float32)
        self._ctx.set_input_shape(self._input, x.shape)
        out = np.empty(tuple(self._ctx.get_tensor_shape(self._output)), dtype=np.float32)
        d_in, d_out = cuda.mem_alloc(x.nbytes), cuda.mem_alloc(out.nbytes)
        try:
            self._ctx.set_tensor_address(self._input, int(d_in))
            self._ctx.set_tensor_address(self._output, int(d_out))
            cuda.memcpy_htod_async(d_in, x, self._stream)
            if not self._ctx.execute_async_v3(self._stream.handle):
                raise DassEdgeError("TensorRT inference failed")
            cuda.memcpy_dtoh_async(out, d_out, self._stream)
            self._stream.synchronize()
        finally:
            d_in.free()
            d_out.free()
        return out

    def deactivate(self) -> None:
        self._ctx = self._engine = None

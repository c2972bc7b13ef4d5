"""TensorRT runner: runs an engine (built here from ONNX, or a serialized one) with ``execute_async_v3``.

The same runner times LUT entries and verifies exported engines (``infer`` on task images). Engines
come from :mod:`.trt_build`, the one builder (strongly typed on TensorRT 9+, precision flags on 8.5).
Buffers come from cuda-python (``cuda.bindings.runtime`` / ``cuda.cudart``) or, failing that, pycuda;
timing uses CUDA events on the runner's own stream. ``tensorrt`` and the CUDA binding are imported lazily.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import numpy as np

from .base import BackendUnavailable, LatencyRunner, RunnerError
from .trt_build import TrtBuildError, build_serialized, write_bytes_atomic

__all__ = ["TrtRunner", "build_engine", "trt_version"]


def _trt():
    try:
        return importlib.import_module("tensorrt")
    except ImportError as e:
        raise BackendUnavailable(
            f"TensorRT is not installed here ({e}); the tensorrt backend needs the TensorRT Python bindings "
            "(JetPack ships them; elsewhere pip install 'dass-edge[tensorrt]') and an NVIDIA GPU"
        ) from None


def trt_version() -> str | None:
    try:
        return _trt().__version__
    except BackendUnavailable:
        return None


class _CudaRt:
    """The few CUDA runtime calls the runner needs, via cuda-python."""

    def __init__(self) -> None:
        for name in ("cuda.bindings.runtime", "cuda.cudart"):
            try:
                self.rt = importlib.import_module(name)
                break
            except ImportError:
                continue
        else:
            raise ImportError("cuda-python is not installed")

    def _ok(self, result):
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            raise RunnerError(f"CUDA runtime error {err}")
        return rest[0] if len(rest) == 1 else rest

    def malloc(self, nbytes: int) -> int:
        return int(self._ok(self.rt.cudaMalloc(nbytes)))

    def free(self, ptr: int) -> None:
        self._ok(self.rt.cudaFree(ptr))

    def h2d(self, ptr: int, host: np.ndarray) -> None:
        self._ok(self.rt.cudaMemcpy(ptr, host.ctypes.data, host.nbytes, self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice))

    def d2h(self, host: np.ndarray, ptr: int) -> None:
        self._ok(self.rt.cudaMemcpy(host.ctypes.data, ptr, host.nbytes, self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost))

    def stream(self):
        return self._ok(self.rt.cudaStreamCreate())

    def stream_handle(self, stream) -> int:
        return int(stream)

    def destroy_stream(self, stream) -> None:
        self._ok(self.rt.cudaStreamDestroy(stream))

    def event(self):
        return self._ok(self.rt.cudaEventCreate())

    def record(self, event, stream) -> None:
        self._ok(self.rt.cudaEventRecord(event, stream))

    def sync_event(self, event) -> None:
        self._ok(self.rt.cudaEventSynchronize(event))

    def sync_stream(self, stream) -> None:
        self._ok(self.rt.cudaStreamSynchronize(stream))

    def elapsed_s(self, start, end) -> float:
        return float(self._ok(self.rt.cudaEventElapsedTime(start, end))) / 1e3

    def close(self) -> None:
        pass


class _PyCuda:
    """The same calls via pycuda (own context, popped on close)."""

    def __init__(self) -> None:
        self.cuda = importlib.import_module("pycuda.driver")
        self.cuda.init()
        self.ctx = self.cuda.Device(0).make_context()
        self._allocs: dict[int, object] = {}

    def malloc(self, nbytes: int) -> int:
        alloc = self.cuda.mem_alloc(max(nbytes, 1))
        self._allocs[int(alloc)] = alloc
        return int(alloc)

    def free(self, ptr: int) -> None:
        self._allocs.pop(ptr).free()

    def h2d(self, ptr: int, host: np.ndarray) -> None:
        self.cuda.memcpy_htod(ptr, host)

    def d2h(self, host: np.ndarray, ptr: int) -> None:
        self.cuda.memcpy_dtoh(host, ptr)

    def stream(self):
        return self.cuda.Stream()

    def stream_handle(self, stream) -> int:
        return int(stream.handle)

    def destroy_stream(self, stream) -> None:
        pass

    def event(self):
        return self.cuda.Event()

    def record(self, event, stream) -> None:
        event.record(stream)

    def sync_event(self, event) -> None:
        event.synchronize()

    def sync_stream(self, stream) -> None:
        stream.synchronize()

    def elapsed_s(self, start, end) -> float:
        return start.time_till(end) / 1e3

    def close(self) -> None:
        self.ctx.pop()


def _cuda_api():
    try:
        return _CudaRt()
    except ImportError:
        pass
    try:
        return _PyCuda()
    except ImportError:
        raise BackendUnavailable("the tensorrt backend needs cuda-python or pycuda for GPU buffers") from None
    except Exception as e:  # pycuda raises its own errors when there is no GPU/driver
        raise BackendUnavailable(f"no usable CUDA device for TensorRT ({e})") from None


def build_engine(onnx_path: str, precision: str = "fp16", workspace_mb: int = 1024, batch: int = 1) -> bytes:
    """A serialized engine for ``onnx_path`` with a dynamic batch fixed at ``batch`` (the latency tables' build).

    Raises:
        RunnerError: parse or build failure; BackendUnavailable: no TensorRT.
    """
    _trt()
    try:
        return build_serialized(onnx_path, precision, workspace_mb, (batch, batch, batch))
    except TrtBuildError as e:
        raise RunnerError(str(e)) from None


class TrtRunner(LatencyRunner):
    """Runs one TensorRT engine: timed on random inputs, or on given images for parity.

    Args:
        model: an ONNX file (the engine is built once and cached next to it, ``<path>.engine``, so each
            fresh session only deserializes it) or a serialized engine file (any other suffix).
        precision: what the ONNX model holds (builder flags on TensorRT < 9 only).
        batch: value for dynamic leading dimensions (of the build and of the timed input).
        workspace_mb: builder workspace limit.
        name: label in errors and comparisons.
    """

    def __init__(self, model: Any, precision: str = "fp16", batch: int = 1, workspace_mb: int = 1024,
                 seed: int = 0, name: str | None = None) -> None:
        super().__init__(name or str(model))
        self.path, self.precision, self.batch = str(model), precision, batch
        self.workspace_mb, self.seed = workspace_mb, seed
        self._cuda = self._runtime = self._engine = self._context = self._stream = self._events = None
        self._ptrs: list[int] = []
        self._bound: dict[str, tuple[tuple[int, ...], int]] = {}  # prepared shape and buffer of each I/O tensor

    @property
    def onnx_path(self) -> str:
        return self.path

    @classmethod
    def from_settings(cls, artifact: str, settings: dict[str, Any],
                      input_shape: tuple[int, ...] | None = None) -> TrtRunner:
        return cls(artifact, precision=str(settings.get("precision", "fp16")), batch=int(settings.get("batch", 1)),
                   workspace_mb=int(settings.get("workspace_mb", 1024)))

    def _serialized(self) -> bytes:
        if not self.path.endswith(".onnx"):
            with open(self.path, "rb") as f:
                return f.read()
        cache = self.path + ".engine"
        if os.path.exists(cache) and os.path.getmtime(cache) >= os.path.getmtime(self.path):
            with open(cache, "rb") as f:
                return f.read()
        data = build_engine(self.path, self.precision, self.workspace_mb, self.batch)
        write_bytes_atomic(cache, data)
        return data

    def activate_impl(self) -> None:
        trt = _trt()
        self._cuda = _cuda_api()
        logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(logger)  # must outlive the engine
        self._engine = self._runtime.deserialize_cuda_engine(self._serialized())
        if self._engine is None:
            raise RunnerError(f"TensorRT could not deserialize the engine for {self.path} "
                              "(built with another TensorRT version or GPU?)")
        self._context = self._engine.create_execution_context()
        self._names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        self._inputs = [n for n in self._names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self._dtypes = {n: np.dtype(trt.nptype(self._engine.get_tensor_dtype(n))) for n in self._names}
        rng = np.random.default_rng(self.seed)
        shapes = {n: tuple(d if d > 0 else self.batch for d in self._engine.get_tensor_shape(n)) for n in self._inputs}
        host = {n: rng.standard_normal(shapes[n]).astype(self._dtypes[n]) for n in self._inputs}
        self._bound = self._bind(host)
        self._ptrs = [ptr for _, ptr in self._bound.values()]
        self._stream = self._cuda.stream()
        self._events = (self._cuda.event(), self._cuda.event())

    def _bind(self, host: dict[str, np.ndarray]) -> dict[str, tuple[tuple[int, ...], int]]:
        """Set input shapes, allocate a buffer per I/O tensor, copy ``host`` inputs in, set the addresses."""
        bound: dict[str, tuple[tuple[int, ...], int]] = {}
        for name in self._inputs:
            self._context.set_input_shape(name, host[name].shape)
        for name in self._names:
            shape = host[name].shape if name in host else tuple(self._context.get_tensor_shape(name))
            ptr = self._cuda.malloc(int(np.prod(shape)) * self._dtypes[name].itemsize)
            bound[name] = (tuple(shape), ptr)
            if name in host:
                self._cuda.h2d(ptr, np.ascontiguousarray(host[name]))
            self._context.set_tensor_address(name, ptr)
        return bound

    def _rebind_prepared(self) -> None:
        for name, (shape, ptr) in self._bound.items():
            if name in self._inputs:
                self._context.set_input_shape(name, shape)
            self._context.set_tensor_address(name, ptr)

    def _execute(self) -> None:
        if not self._context.execute_async_v3(self._cuda.stream_handle(self._stream)):
            raise RunnerError(f"TensorRT execution failed for {self.path}")

    def run_impl(self) -> None:
        self._execute()
        self._cuda.sync_stream(self._stream)

    def _max_batch(self, name: str) -> int:
        """The largest batch the engine takes for input ``name`` (its profile's max, or its static batch)."""
        dims = tuple(self._engine.get_tensor_shape(name))
        if dims[0] > 0:
            return dims[0]
        return int(tuple(self._engine.get_tensor_profile_shape(name, 0)[2])[0])

    def infer_impl(self, x: Any) -> np.ndarray:
        (name,) = self._inputs  # image classifiers have one input
        x = np.asarray(x)
        step = self._max_batch(name)
        outputs = [n for n in self._names if n not in self._inputs]
        chunks = []
        try:
            for i in range(0, len(x), step):
                bound = self._bind({name: x[i : i + step].astype(self._dtypes[name])})
                try:
                    self._execute()
                    shape, ptr = bound[outputs[0]]
                    out = np.empty(shape, dtype=self._dtypes[outputs[0]])
                    self._cuda.sync_stream(self._stream)
                    self._cuda.d2h(out, ptr)
                    chunks.append(out.astype(np.float32))
                finally:
                    for _, p in bound.values():
                        self._cuda.free(p)
        finally:
            self._rebind_prepared()
        return np.concatenate(chunks)

    def time_impl(self) -> float:
        start, end = self._events
        self._cuda.record(start, self._stream)
        self._execute()
        self._cuda.record(end, self._stream)
        self._cuda.sync_event(end)
        return self._cuda.elapsed_s(start, end)

    def deactivate_impl(self) -> None:
        try:
            if self._cuda is not None:
                for ptr in self._ptrs:
                    self._cuda.free(ptr)
                if self._stream is not None:
                    self._cuda.destroy_stream(self._stream)
                self._cuda.close()
        finally:
            self._ptrs, self._bound = [], {}
            self._context = self._engine = self._runtime = None
            self._cuda = self._stream = self._events = None

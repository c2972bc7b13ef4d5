"""TensorRT runner: builds a strongly typed engine from ONNX on this device and times ``execute_async_v3``.

Strongly typed networks take their precision from the ONNX model itself: an FP16 model gives an FP16
engine and a Q/DQ model an INT8 one (TensorRT 10.1+), so no builder precision flags are set. Buffers
come from cuda-python (``cuda.bindings.runtime`` / ``cuda.cudart``) or, failing that, pycuda; timing
uses CUDA events on the runner's own stream. ``tensorrt`` and the CUDA binding are imported lazily.
"""

from __future__ import annotations

import importlib
import os

import numpy as np

from .base import BackendUnavailable, LatencyRunner, RunnerError

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
    """Build a serialized engine from an ONNX file, on the device that will run it.

    TensorRT 9+ builds a strongly typed network (the ONNX types decide the precision). Older releases
    (JetPack 5 ships 8.5) have no strongly typed mode, so the builder flag matching ``precision`` is set.
    A dynamic batch dimension (exported models have one) gets an optimization profile fixed at ``batch``.
    """
    trt = _trt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = trt.NetworkDefinitionCreationFlag
    strongly_typed = getattr(flags, "STRONGLY_TYPED", None)
    if strongly_typed is not None:
        network = builder.create_network(1 << int(strongly_typed))
    else:
        network = builder.create_network(1 << int(flags.EXPLICIT_BATCH))
    parser = trt.OnnxParser(network, logger)
    with open(onnx_path, "rb") as f:
        if not parser.parse(f.read()):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise RunnerError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    dynamic = [t for t in inputs if any(d < 0 for d in tuple(t.shape))]
    if dynamic:
        profile = builder.create_optimization_profile()
        for t in dynamic:
            dims = tuple(t.shape)
            if any(d < 0 for d in dims[1:]):
                raise RunnerError(f"{onnx_path}: input {t.name} has dynamic dims beyond the batch: {dims}")
            shape = (batch, *dims[1:])
            profile.set_shape(t.name, shape, shape, shape)
        config.add_optimization_profile(profile)
    if strongly_typed is None and precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
        if precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RunnerError(f"TensorRT failed to build an engine for {onnx_path}")
    return bytes(serialized)


class TrtRunner(LatencyRunner):
    """Times one TensorRT engine built from an ONNX file.

    Args:
        onnx_path: the model; the engine is built once and cached next to it (``<path>.engine``) so each
            fresh session only deserializes it.
        precision: what the model holds (used only by TensorRT < 9, which has no strongly typed mode).
        batch: value for dynamic leading dimensions.
        workspace_mb: builder workspace limit.
    """

    def __init__(self, onnx_path: str, precision: str = "fp16", batch: int = 1, workspace_mb: int = 1024,
                 seed: int = 0) -> None:
        super().__init__(onnx_path)
        self.onnx_path, self.precision, self.batch = onnx_path, precision, batch
        self.workspace_mb, self.seed = workspace_mb, seed
        self._cuda = self._runtime = self._engine = self._context = self._stream = self._events = None
        self._ptrs: list[int] = []

    def _serialized(self) -> bytes:
        cache = self.onnx_path + ".engine"
        if os.path.exists(cache) and os.path.getmtime(cache) >= os.path.getmtime(self.onnx_path):
            with open(cache, "rb") as f:
                return f.read()
        data = build_engine(self.onnx_path, self.precision, self.workspace_mb, self.batch)
        tmp = cache + ".tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, cache)
        return data

    def activate_impl(self) -> None:
        trt = _trt()
        self._cuda = _cuda_api()
        logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(logger)  # must outlive the engine
        self._engine = self._runtime.deserialize_cuda_engine(self._serialized())
        if self._engine is None:
            raise RunnerError(f"TensorRT could not deserialize the engine for {self.onnx_path}")
        self._context = self._engine.create_execution_context()
        rng = np.random.default_rng(self.seed)
        for i in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(i)
            shape = tuple(d if d > 0 else self.batch for d in self._engine.get_tensor_shape(name))
            dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(name)))
            is_input = self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            if is_input:
                self._context.set_input_shape(name, shape)
            else:
                shape = tuple(self._context.get_tensor_shape(name))
            nbytes = int(np.prod(shape)) * dtype.itemsize
            ptr = self._cuda.malloc(nbytes)
            self._ptrs.append(ptr)
            if is_input:
                self._cuda.h2d(ptr, np.ascontiguousarray(rng.standard_normal(shape).astype(dtype)))
            self._context.set_tensor_address(name, ptr)
        self._stream = self._cuda.stream()
        self._events = (self._cuda.event(), self._cuda.event())

    def infer_impl(self) -> None:
        if not self._context.execute_async_v3(self._cuda.stream_handle(self._stream)):
            raise RunnerError(f"TensorRT execution failed for {self.onnx_path}")
        self._cuda.sync_stream(self._stream)

    def time_impl(self) -> float:
        start, end = self._events
        self._cuda.record(start, self._stream)
        if not self._context.execute_async_v3(self._cuda.stream_handle(self._stream)):
            raise RunnerError(f"TensorRT execution failed for {self.onnx_path}")
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
            self._ptrs = []
            self._context = self._engine = self._runtime = None
            self._cuda = self._stream = self._events = None

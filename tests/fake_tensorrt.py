"""The one stand-in for ``tensorrt`` and ``cuda-python`` (neither installs here), shared by every test.

It implements just the documented calls dass-edge makes (TensorRT 10 Python API, which 8.5 already has
for engines; CUDA runtime bindings) and records them, so call sequences, flags, buffers and the timing
path are checked on every machine. ``version`` picks the API generation: 9+ has strongly typed
networks, 8.x has only explicit batch and builder precision flags. Device memory is kept in a dict;
the stand-in engine copies its input bytes to its output, so ``infer`` round trips are observable.
"""

from __future__ import annotations

import ctypes
import importlib.machinery
import sys
import types

import numpy as np
import onnx

__all__ = ["fake_cudart", "fake_tensorrt", "install_fakes"]

_ONNX_TYPES = {onnx.TensorProto.FLOAT: "FLOAT", onnx.TensorProto.FLOAT16: "HALF"}


def fake_tensorrt(version: str = "10.9.0", parse_ok: bool = True, build_ok: bool = True
                  ) -> tuple[types.ModuleType, dict]:
    """A ``tensorrt`` module and the log of what was asked of it."""
    log: dict = {"flags": [], "builder_flags": [], "parsed": 0, "built": 0, "shapes": {}, "addresses": {}, "runs": 0}
    trt = types.ModuleType("tensorrt")
    trt.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)  # find_spec() sees it as installed
    trt.__version__ = version
    typed = int(version.split(".")[0]) >= 9

    class Logger:
        WARNING = 2

        def __init__(self, level):
            pass

    flags = {"EXPLICIT_BATCH": 0}
    if typed:
        flags["STRONGLY_TYPED"] = 1
    trt.Logger = Logger
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(**flags)
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="workspace")
    trt.BuilderFlag = types.SimpleNamespace(FP16="fp16", INT8="int8")
    trt.TensorIOMode = types.SimpleNamespace(INPUT="input", OUTPUT="output")
    trt.nptype = lambda dt: {"FLOAT": np.float32, "HALF": np.float16}[dt]

    class Network:
        tensors: list = []

        @property
        def num_inputs(self):
            return sum(1 for t in self.tensors if t[3] == "input")

        def get_input(self, i):
            name, shape, _, _ = [t for t in self.tensors if t[3] == "input"][i]
            return types.SimpleNamespace(name=name, shape=tuple(shape))

    class Parser:
        def __init__(self, network, logger):
            self.network = network
            self.num_errors = 0 if parse_ok else 1

        def get_error(self, i):
            return "unsupported op Foo"

        def parse(self, data: bytes) -> bool:
            log["parsed"] += 1
            if not parse_ok:
                return False
            g = onnx.load_from_string(data).graph
            self.network.tensors = [
                (v.name, [d.dim_value or -1 for d in v.type.tensor_type.shape.dim],
                 _ONNX_TYPES[v.type.tensor_type.elem_type], mode)
                for vs, mode in ((g.input, "input"), (g.output, "output")) for v in vs]
            return True

    class Config:
        profiles: list = []

        def set_memory_pool_limit(self, pool, size):
            log["workspace"] = size

        def set_flag(self, flag):
            log["builder_flags"].append(flag)

        def add_optimization_profile(self, profile):
            log["profiles"] = log.get("profiles", []) + [profile.shapes]
            self.profiles = [*self.profiles, profile.shapes]

    class Profile:
        def __init__(self):
            self.shapes: dict = {}

        def set_shape(self, name, lo, opt, hi):
            self.shapes[name] = (tuple(lo), tuple(opt), tuple(hi))

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            log["flags"].append(flags)
            return Network()

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            log["built"] += 1
            if not build_ok:
                return None
            return repr((network.tensors, config.profiles[0] if config.profiles else {})).encode()

    class Context:
        def __init__(self, engine):
            self.engine, self.input_shapes = engine, {}

        def set_input_shape(self, name, shape):
            log["shapes"][name] = self.input_shapes[name] = tuple(shape)

        def get_tensor_shape(self, name):  # outputs follow the batch of the (single) input
            dims = list(self.engine._get(name)[1])
            if dims and dims[0] < 0 and self.input_shapes:
                dims[0] = next(iter(self.input_shapes.values()))[0]
            return tuple(dims)

        def set_tensor_address(self, name, ptr):
            log["addresses"][name] = ptr

        def execute_async_v3(self, stream):
            assert set(log["addresses"]) >= {t[0] for t in self.engine.tensors}, "every I/O tensor needs an address"
            log["runs"] += 1
            memory = log.get("memory")
            if memory is not None:  # copy the input's bytes into the output buffer
                (src,) = [log["addresses"][t[0]] for t in self.engine.tensors if t[3] == "input"][:1]
                for t in self.engine.tensors:
                    if t[3] == "output":
                        dst = log["addresses"][t[0]]
                        memory[dst] = memory.get(src, b"")[: len(memory.get(dst, b""))]
            return True

    class Engine:
        def __init__(self, tensors, profile):
            self.tensors, self.profile = tensors, profile
            self.num_io_tensors = len(tensors)

        def get_tensor_name(self, i):
            return self.tensors[i][0]

        def _get(self, name):
            return next(t for t in self.tensors if t[0] == name)

        def get_tensor_shape(self, name):
            return tuple(self._get(name)[1])

        def get_tensor_dtype(self, name):
            return self._get(name)[2]

        def get_tensor_mode(self, name):
            return self._get(name)[3]

        def get_tensor_profile_shape(self, name, index):
            return self.profile[name]

        def create_execution_context(self):
            return Context(self)

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data):
            return Engine(*eval(data.decode()))  # the stand-in "engine" is the repr of tensors and profile

    trt.Builder, trt.OnnxParser, trt.Runtime = Builder, Parser, Runtime
    return trt, log


def fake_cudart(memory: dict | None = None) -> tuple[types.ModuleType, dict]:
    """A ``cuda.bindings.runtime`` module whose device memory is ``memory`` (ptr -> bytes)."""
    log: dict = {"malloc": [], "free": [], "h2d": 0, "d2h": 0, "records": 0}
    memory = {} if memory is None else memory
    rt = types.ModuleType("cuda.bindings.runtime")
    rt.cudaMemcpyKind = types.SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2)

    def malloc(n):
        log["malloc"].append(n)
        ptr = 4096 * len(log["malloc"])
        memory[ptr] = bytes(n)
        return 0, ptr

    def memcpy(dst, src, n, kind):
        if kind == 1:
            log["h2d"] += 1
            memory[dst] = ctypes.string_at(src, n)
        else:
            log["d2h"] += 1
            ctypes.memmove(dst, memory[src][:n].ljust(n, b"\0"), n)
        return (0,)

    def record(ev, stream):
        log["records"] += 1
        return (0,)

    rt.cudaMalloc = malloc
    rt.cudaFree = lambda p: (log["free"].append(p), (0,))[1]
    rt.cudaMemcpy = memcpy
    rt.cudaStreamCreate = lambda: (0, 7)
    rt.cudaStreamDestroy = lambda s: (0,)
    rt.cudaStreamSynchronize = lambda s: (0,)
    rt.cudaEventCreate = lambda: (0, object())
    rt.cudaEventRecord = record
    rt.cudaEventSynchronize = lambda e: (0,)
    rt.cudaEventElapsedTime = lambda a, b: (0, 0.25)
    return rt, log


def install_fakes(monkeypatch, version: str = "10.9.0", cuda: bool = True, **trt_options) -> tuple[dict, dict | None]:
    """Put the stand-ins in ``sys.modules`` (``cuda=False``: no CUDA binding at all); returns both logs."""
    trt, trt_log = fake_tensorrt(version, **trt_options)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    if not cuda:
        for name in ("cuda", "cuda.bindings", "cuda.bindings.runtime", "cuda.cudart", "pycuda", "pycuda.driver"):
            monkeypatch.setitem(sys.modules, name, None)  # None makes the import fail
        return trt_log, None
    trt_log["memory"] = {}
    rt, cuda_log = fake_cudart(trt_log["memory"])
    package, bindings = types.ModuleType("cuda"), types.ModuleType("cuda.bindings")
    bindings.runtime = rt
    for name, mod in (("cuda", package), ("cuda.bindings", bindings), ("cuda.bindings.runtime", rt)):
        monkeypatch.setitem(sys.modules, name, mod)
    return trt_log, cuda_log

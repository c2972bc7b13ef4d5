"""The TensorRT runner against stand-ins for ``tensorrt`` and ``cuda-python`` (neither installs here).

The stand-ins implement just the documented calls the runner makes (TensorRT 10 Python API, CUDA runtime
bindings) and record them, so the call sequence, flags, buffers and timing path are checked on every
machine. Where real TensorRT exists, ``test_latency_runners.py`` runs the real thing instead.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import onnx
import pytest

from dass_edge.latency.artifacts import EntryArtifact
from dass_edge.latency.entries import Entry
from dass_edge.latency.runners import BackendUnavailable, TrtRunner, make_runner
from dass_edge.latency.runners.tensorrt import build_engine

if "tensorrt" in sys.modules or __import__("importlib.util").util.find_spec("tensorrt") is not None:
    pytest.skip("real TensorRT is installed; the stand-ins would shadow it", allow_module_level=True)

_ONNX_TYPES = {onnx.TensorProto.FLOAT: "FLOAT", onnx.TensorProto.FLOAT16: "HALF"}


def fake_tensorrt(strongly_typed: bool = True) -> tuple[types.ModuleType, dict]:
    log: dict = {"flags": [], "builder_flags": [], "parsed": 0, "built": 0, "shapes": {}, "addresses": {}, "runs": 0}
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.9.0" if strongly_typed else "8.5.2"

    class Logger:
        WARNING = 2

        def __init__(self, level):
            pass

    flags = {"EXPLICIT_BATCH": 0}
    if strongly_typed:
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
            return types.SimpleNamespace(name=name, shape=tuple(-1 if d == 0 else d for d in shape))

    class Parser:
        def __init__(self, network, logger):
            self.network = network
            self.num_errors = 0

        def parse(self, data: bytes) -> bool:
            model = onnx.load_from_string(data)
            g = model.graph
            self.network.tensors = [
                (v.name, [d.dim_value for d in v.type.tensor_type.shape.dim], _ONNX_TYPES[v.type.tensor_type.elem_type],
                 mode) for vs, mode in ((g.input, "input"), (g.output, "output")) for v in vs]
            log["parsed"] += 1
            return True

    class Config:
        def set_memory_pool_limit(self, pool, size):
            log["workspace"] = size

        def set_flag(self, flag):
            log["builder_flags"].append(flag)

        def add_optimization_profile(self, profile):
            log["profiles"] = log.get("profiles", []) + [profile.shapes]

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            log["flags"].append(flags)
            return Network()

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            class Profile:
                shapes: dict = {}

                def set_shape(self, name, lo, opt, hi):
                    self.shapes = {**self.shapes, name: (tuple(lo), tuple(opt), tuple(hi))}

            return Profile()

        def build_serialized_network(self, network, config):
            log["built"] += 1
            return repr(network.tensors).encode()

    class Context:
        def __init__(self, tensors):
            self.tensors = {t[0]: t for t in tensors}

        def set_input_shape(self, name, shape):
            log["shapes"][name] = tuple(shape)

        def get_tensor_shape(self, name):
            return self.tensors[name][1]

        def set_tensor_address(self, name, ptr):
            log["addresses"][name] = ptr

        def execute_async_v3(self, stream):
            assert set(log["addresses"]) == set(self.tensors), "every I/O tensor needs an address"
            log["runs"] += 1
            return True

    class Engine:
        def __init__(self, tensors):
            self.tensors = tensors
            self.num_io_tensors = len(tensors)

        def get_tensor_name(self, i):
            return self.tensors[i][0]

        def _get(self, name):
            return next(t for t in self.tensors if t[0] == name)

        def get_tensor_shape(self, name):
            return self._get(name)[1]

        def get_tensor_dtype(self, name):
            return self._get(name)[2]

        def get_tensor_mode(self, name):
            return self._get(name)[3]

        def create_execution_context(self):
            return Context(self.tensors)

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data):
            return Engine(eval(data.decode()))  # the stand-in "engine" is the tensor list's repr

    trt.Builder, trt.OnnxParser, trt.Runtime = Builder, Parser, Runtime
    return trt, log


def fake_cudart() -> tuple[types.ModuleType, dict]:
    log: dict = {"malloc": [], "free": [], "h2d": 0, "records": 0}
    rt = types.ModuleType("cuda.bindings.runtime")
    rt.cudaMemcpyKind = types.SimpleNamespace(cudaMemcpyHostToDevice=1)

    def malloc(n):
        log["malloc"].append(n)
        return 0, 4096 * len(log["malloc"])

    def memcpy(dst, src, n, kind):
        log["h2d"] += 1
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


@pytest.fixture
def fakes(monkeypatch):
    trt, trt_log = fake_tensorrt()
    rt, cuda_log = fake_cudart()
    cuda, bindings = types.ModuleType("cuda"), types.ModuleType("cuda.bindings")
    bindings.runtime = rt
    for name, mod in (("tensorrt", trt), ("cuda", cuda), ("cuda.bindings", bindings), ("cuda.bindings.runtime", rt)):
        monkeypatch.setitem(sys.modules, name, mod)
    return trt_log, cuda_log


def test_trt_runner_builds_once_and_times_with_events(fakes, tmp_path):
    trt_log, cuda_log = fakes
    entry = Entry("block", 8, 16, 2, 16)
    path = EntryArtifact(entry, "tensorrt", "fp16")(tmp_path / "b.onnx")
    for _ in range(2):  # two fresh sessions: the engine is built once, then read from the cache
        with TrtRunner(str(path), precision="fp16") as r:
            times = r.measure(0.0, 4, min_warmup_runs=2)
    assert times == [0.00025] * 4  # cudaEventElapsedTime's 0.25 ms, in seconds
    assert trt_log["built"] == 1 and Path(str(path) + ".engine").exists()
    assert trt_log["flags"] == [1 << 1]  # STRONGLY_TYPED, no builder precision flags
    assert trt_log["builder_flags"] == [] and trt_log["workspace"] == 1024 << 20
    assert trt_log["shapes"] == {"x": entry.input_shape}
    assert set(trt_log["addresses"]) == {"x", "y"} and trt_log["runs"] == 2 * (2 + 4)
    assert cuda_log["malloc"] == [8 * 16 * 16 * 2, 16 * 8 * 8 * 2] * 2  # fp16 input and output, per session
    assert sorted(cuda_log["free"]) == sorted(4096 * (i + 1) for i in range(4)) and cuda_log["h2d"] == 2
    assert cuda_log["records"] == 2 * 4 * 2  # start/end event per timed call


def test_trt_before_9_uses_builder_precision_flags(monkeypatch, tmp_path):
    trt, log = fake_tensorrt(strongly_typed=False)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    path = EntryArtifact(Entry("head", 8, 3, 1, 4), "tensorrt", "fp16")(tmp_path / "h.onnx")
    build_engine(str(path), "int8")
    assert log["flags"] == [1 << 0] and log["builder_flags"] == ["fp16", "int8"]


def test_dynamic_batch_onnx_gets_an_optimization_profile(monkeypatch, tmp_path):
    trt, log = fake_tensorrt()
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    path = EntryArtifact(Entry("head", 8, 3, 1, 4), "tensorrt", "fp16")(tmp_path / "h.onnx")
    model = onnx.load(str(path))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"  # as exported models have
    dyn = tmp_path / "dyn.onnx"
    onnx.save(model, str(dyn))
    build_engine(str(path), "fp16")
    assert "profiles" not in log  # static shapes need none
    build_engine(str(dyn), "fp16", batch=4)
    (shapes,) = log["profiles"]
    name = model.graph.input[0].name
    static = tuple(d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[1:])
    assert shapes == {name: ((4, *static),) * 3}


def test_trt_without_cuda_bindings_is_a_clear_error(monkeypatch, tmp_path):
    trt, _ = fake_tensorrt()
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    for name in ("cuda", "cuda.bindings", "cuda.bindings.runtime", "cuda.cudart", "pycuda", "pycuda.driver"):
        monkeypatch.setitem(sys.modules, name, None)  # None makes the import fail
    path = EntryArtifact(Entry("head", 8, 3, 1, 4), "tensorrt", "fp16")(tmp_path / "h.onnx")
    with pytest.raises(BackendUnavailable, match="cuda-python or pycuda"):
        make_runner({"backend": "tensorrt", "precision": "fp16"}, str(path)).activate()


def test_profile_a_tensorrt_device_end_to_end_on_the_stand_ins(fakes, tmp_path, monkeypatch):
    from test_latency_profile import tiny_profile

    from dass_edge.latency import profile_device
    from dass_edge.spec import ModelSpec

    monkeypatch.setenv("DASS_EDGE_TABLES", str(tmp_path / "tables"))
    profile = tiny_profile(tmp_path / "profiles", name="fake-trt", backend="tensorrt", precision="fp16")
    teacher = ModelSpec.uniform((2, 2, 2, 2), (1, 1, 1, 1), num_classes=3, resolution=32)
    result = profile_device(str(profile), teacher, students=4)
    assert result.table.backend == "tensorrt" and result.table.precision == "fp16"
    assert result.table.provenance["backend_version"] == "10.9.0"
    assert fakes[0]["built"] == 1 + len(result.table.entries) + 4  # one engine per model, built on the "device"

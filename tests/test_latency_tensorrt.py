"""The TensorRT runner and engine builder against the stand-ins of ``fake_tensorrt`` (TensorRT 10 and 8.5).

Where real TensorRT exists, ``test_latency_runners.py`` runs the real thing instead.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from fake_tensorrt import install_fakes

from dass_edge.latency.artifacts import EntryArtifact
from dass_edge.latency.entries import Entry
from dass_edge.latency.runners import BackendUnavailable, TrtRunner, make_runner
from dass_edge.latency.runners.tensorrt import build_engine
from dass_edge.latency.runners.trt_build import write_engine

if "tensorrt" in sys.modules or __import__("importlib.util").util.find_spec("tensorrt") is not None:
    pytest.skip("real TensorRT is installed; the stand-ins would shadow it", allow_module_level=True)

@pytest.fixture
def fakes(monkeypatch):
    return install_fakes(monkeypatch)


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
    log, _ = install_fakes(monkeypatch, version="8.5.2")
    path = EntryArtifact(Entry("head", 8, 3, 1, 4), "tensorrt", "fp16")(tmp_path / "h.onnx")
    build_engine(str(path), "int8")
    assert log["flags"] == [1 << 0] and log["builder_flags"] == ["fp16", "int8"]


def test_dynamic_batch_onnx_gets_an_optimization_profile(monkeypatch, tmp_path):
    log, _ = install_fakes(monkeypatch)
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
    install_fakes(monkeypatch, cuda=False)
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


def _dynamic_onnx(path: Path, features: int = 4) -> Path:
    """``output = Relu(input)`` with a dynamic batch, like exported students."""
    from onnx import TensorProto, helper

    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", features]) for n in ("input", "output")]
    graph = helper.make_graph([helper.make_node("Relu", ["input"], ["output"])], "m", io[:1], io[1:])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_trt_runner_infers_given_images_in_chunks_of_the_engine_max_batch(fakes, tmp_path):
    trt_log, cuda_log = fakes
    engine = write_engine(str(_dynamic_onnx(tmp_path / "m.onnx")), str(tmp_path / "m.engine"), "fp32",
                          min_batch=1, opt_batch=2, max_batch=3)
    x = np.arange(7 * 4, dtype=np.float32).reshape(7, 4)
    with TrtRunner(engine, batch=2, name="engine") as r:  # a serialized engine: deserialized, not rebuilt
        out = r.infer(x)
        assert trt_log["shapes"]["input"] == (2, 4)  # the prepared binding is restored for timing
        assert len(r.measure(0.0, 1, min_warmup_runs=1)) == 1
    np.testing.assert_array_equal(out, x)  # the stand-in engine copies its input to its output
    assert trt_log["built"] == 1 and r.name == "engine" and r.inference_time is not None
    assert cuda_log["malloc"] == [2 * 4 * 4] * 2 + [n * 4 * 4 for n in (3, 3, 3, 3, 1, 1)]  # chunks of 3, 3, 1
    assert cuda_log["d2h"] == 3 and sorted(cuda_log["free"]) == sorted(4096 * (i + 1) for i in range(8))

"""Registries are the only lists: contract tests parametrized over each registry (timm's
``parametrize(list_models())``), and plugins added in one file each (a toy backend, a toy export format)
picked up everywhere.

A new backend, format, loss, proxy or search algorithm is tested here without editing this file.
"""

from __future__ import annotations

import importlib
import json
import math
import sys

import numpy as np
import pytest
import torch
from conftest import run_cli
from dass_edge.exporters.formats import FORMATS, get_format, register_format
from fake_tensorrt import install_fakes
from test_export_support import make_student
from test_latency_profile import TINY_TEACHER, tiny_profile

from dass_edge.errors import DassEdgeError
from dass_edge.latency.artifacts import MODEL_FORMATS
from dass_edge.latency.graphs import PRECISIONS
from dass_edge.latency.runners import (
    LatencyRunner,
    RunnerError,
    get_backend,
    list_backends,
    make_runner,
    register_backend,
    unregister_backend,
)
from dass_edge.latency.runners.registry import INT8_FLAVOURS
from dass_edge.predictor.proxies import PROXIES, register_proxy, score_proxy
from dass_edge.training.losses import LOSSES, get_loss, loss_needs_teacher, register_loss


# --- backends ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", list_backends(), ids=lambda b: b.name)
def test_backend_contract(backend):
    assert backend.suffix in MODEL_FORMATS and set(backend.precisions) <= set(PRECISIONS) and backend.precisions
    assert (backend.int8 in INT8_FLAVOURS) == ("int8" in backend.precisions)
    cls = backend.runner_class()  # imports lazily, never the backend library itself
    assert issubclass(cls, LatencyRunner) and cls.from_settings is not LatencyRunner.from_settings
    runner = make_runner({"backend": backend.name, "precision": backend.precisions[0]}, "model" + backend.suffix,
                         (1, 3, 8, 8))
    assert isinstance(runner, cls) and not runner.is_active
    version = backend.version()  # None where not installed; never raises
    assert version is None or isinstance(version, (str, dict))
    with pytest.raises(ValueError, match="registered twice"):
        register_backend(backend)


def test_unknown_backend_lists_the_registered_ones():
    with pytest.raises(RunnerError, match="unknown backend 'openvino'; choose one of onnxruntime, torch, tensorrt"):
        get_backend("openvino")


@pytest.fixture
def toy_backend(tmp_path, monkeypatch):
    monkeypatch.setenv("DASS_EDGE_TABLES", str(tmp_path / "tables"))
    monkeypatch.setenv("DASS_EDGE_PROFILES", str(tmp_path / "profiles"))
    sys.modules.pop("toy_backend", None)
    module = importlib.import_module("toy_backend")  # registers on import
    yield module
    unregister_backend(module.NAME)
    sys.modules.pop("toy_backend", None)


def test_a_backend_added_in_one_file_is_profiled_and_listed(toy_backend, tmp_path, capsys):
    from dass_edge.latency import profile_device

    profile = tiny_profile(tmp_path / "profiles", name="toy", backend=toy_backend.NAME, iterations=2, sessions=1,
                           fidelity_students=3, fidelity_sessions=1)
    result = profile_device(str(profile), TINY_TEACHER, students=3)
    prov = result.table.provenance
    assert result.table.backend == toy_backend.NAME and result.path.exists()
    assert prov["backend_version"] == importlib.import_module("onnx").__version__  # the registry's version probe
    assert prov["device"]["backends"][toy_backend.NAME] == prov["backend_version"]
    entries = result.table.entries
    assert entries and all(e["p50_ms"] > 0 for e in (entries.values() if isinstance(entries, dict) else entries))
    code, out, err = run_cli(["devices", "--json"], capsys)
    assert code == 0, err
    (row,) = [r for r in json.loads(out) if r["name"] == "toy"]
    assert row["backend"] == toy_backend.NAME and row["table"]["entries"] == len(result.table.entries)
    from dass_edge.latency import load_profile

    bad = tiny_profile(tmp_path / "bad", name="bad", backend=toy_backend.NAME, precision="int8")
    with pytest.raises(DassEdgeError, match="onnx-reference backend measures fp32; use onnxruntime, tensorrt for int8"):
        load_profile(str(bad))


def test_the_toy_runner_verifies_outputs_like_the_builtin_one(toy_backend, tmp_path):
    """One runner contract for timing and verification: the toy and onnxruntime agree on outputs."""
    from dass_edge.latency.artifacts import StudentArtifact
    from dass_edge.latency.runners import OrtRunner

    path = str(StudentArtifact(TINY_TEACHER, 2, "onnxruntime", "fp32")(tmp_path / "s.onnx"))
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    with toy_backend.ReferenceRunner(path) as ref, OrtRunner(path) as ort:
        np.testing.assert_allclose(ref.infer(x), ort.infer(x), rtol=1e-4, atol=1e-4)


# --- export formats ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(FORMATS))
def test_format_contract(name):
    fmt = get_format(name)
    assert fmt.name == name and fmt.description and callable(fmt.make) and callable(fmt.calibrate)
    with pytest.raises(ValueError, match="registered twice"):
        register_format(name, "again")(fmt.make)


def test_unknown_format_is_a_one_line_error():
    with pytest.raises(DassEdgeError, match="unknown format 'tflite'; choose one of onnx, onnx-fp16"):
        get_format("tflite")


@pytest.fixture
def toy_format():
    from dass_edge.exporters.formats import unregister_format

    sys.modules.pop("toy_format", None)
    module = importlib.import_module("toy_format")
    yield module
    unregister_format(module.NAME)
    sys.modules.pop("toy_format", None)


@pytest.mark.slow
def test_a_format_added_in_one_file_is_exported_verified_and_recorded(toy_format, tmp_path):
    from dass_edge.export import export

    ckpt = make_student(tmp_path / "student.safetensors")
    record = export(ckpt, toy_format.NAME, measure=False)
    fp32, opt = record["artifacts"]
    assert record["format"] == toy_format.NAME and opt["format"] == toy_format.NAME
    assert opt["made_from"] == fp32["file"] and opt["parity_max_abs"] <= opt["parity_tolerance"] == 1e-4
    assert opt["agreement"] == 100.0 and (tmp_path / "export" / opt["file"]).stat().st_size == opt["bytes"]


@pytest.mark.slow
def test_xavier_nx_exports_an_engine_with_tensorrt_8_5(tmp_path, monkeypatch):
    """JetPack 5 (TensorRT 8.5, no strongly typed networks): the engine is built with the FP16 flag, and the
    printed trtexec command has no --stronglyTyped, as the profile can also be profiled."""
    import dass_edge.exporters.tensorrt as trt_export

    from dass_edge.export import export

    log, _ = install_fakes(monkeypatch, version="8.5.2", cuda=False)  # no CUDA binding: built, not run, here
    monkeypatch.setattr(trt_export, "_cuda_device_count", lambda: 1)
    ckpt = make_student(tmp_path / "student.safetensors")
    record = export(ckpt, "tensorrt", device="jetson-xavier-nx", measure=False)
    trt = record["tensorrt"]
    assert (trt["built_on"], trt["tensorrt_version"], trt["precision"]) == ("local", "8.5.2", "fp16")
    assert log["flags"] == [1 << 0] and log["builder_flags"] == ["fp16"] and log["built"] == 1
    assert "--stronglyTyped" not in trt["commands"]["trtexec"] and " --fp16 " in trt["commands"]["trtexec"]
    assert "--precision fp16" in trt["commands"]["python"]
    engine = record["artifacts"][-1]
    assert engine["format"] == "tensorrt" and engine["made_from"] == "student.fp16.onnx"
    assert (tmp_path / "export" / engine["file"]).read_bytes().startswith(b"([('input'")
    assert any("not verified here" in n and "cuda-python or pycuda" in n for n in record["notes"])


# --- losses ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("key", sorted(LOSSES))
def test_loss_contract(key):
    torch.manual_seed(0)
    s, t, y = torch.randn(4, 5), torch.randn(4, 5), torch.tensor([0, 1, 2, 3])
    needs = loss_needs_teacher(key)
    value = get_loss(key)(s, t if needs else None, y)  # a loss without a teacher must not read it
    assert value.dim() == 0 and math.isfinite(float(value))
    with pytest.raises(ValueError, match="registered twice"):
        register_loss(key)(LOSSES[key])


def test_losses_declare_whether_they_need_the_teacher():
    assert loss_needs_teacher("kd") and not loss_needs_teacher("ce")
    with pytest.raises(DassEdgeError, match="no loss 'fancy' registered"):
        loss_needs_teacher("fancy")


# --- proxies -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(PROXIES))
def test_proxy_contract(name, small_teacher):
    torch.manual_seed(0)
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    assert math.isfinite(score_proxy(name, small_teacher, x, y))
    with pytest.raises(ValueError, match="registered twice"):
        register_proxy(PROXIES[name])

"""The directly written ONNX graphs compute exactly what the torch model family computes."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from dass_edge.latency.artifacts import EntryArtifact, OverheadArtifact, StudentArtifact
from dass_edge.latency.entries import Entry, spec_entries
from dass_edge.latency.graphs import entry_model, spec_model, state_dict_params
from dass_edge.models import build_model, model_spec
from dass_edge.models.layers import BasicBlock


def _perturb_bn(model: torch.nn.Module) -> torch.nn.Module:
    torch.manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model.eval()


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


@pytest.mark.parametrize("name,kwargs", [("resnet_edge_s", {"num_classes": 26}),
                                         ("resnet18", {"num_classes": 7, "resolution": 48})])
def test_whole_model_graph_matches_torch(name, kwargs):
    spec = model_spec(name, **kwargs)
    model = _perturb_bn(build_model(spec))
    x = np.random.default_rng(0).standard_normal((1, 3, spec.resolution, spec.resolution)).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    got = _run(spec_model(spec, params=state_dict_params(model.state_dict())), x)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("cin,cout,stride", [(8, 8, 1), (8, 12, 1), (8, 12, 2)])
def test_block_graph_matches_basic_block(cin, cout, stride):
    block = _perturb_bn(BasicBlock(cin, cout, stride))
    entry = Entry("block", cin, cout, stride, 10)
    x = np.random.default_rng(1).standard_normal(entry.input_shape).astype(np.float32)
    with torch.no_grad():
        want = block(torch.from_numpy(x)).numpy()
    got = _run(entry_model(entry, params=state_dict_params(block.state_dict())), x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_every_entry_kind_builds_and_runs_in_fp32_and_fp16():
    spec = model_spec("resnet_edge_s", num_classes=5, stem="imagenet", resolution=40)
    for e in spec_entries(spec)[:3] + spec_entries(spec)[-1:]:
        for precision, dtype in (("fp32", np.float32), ("fp16", np.float16)):
            model = entry_model(e, precision)
            onnx.checker.check_model(model)
            y = _run(model, np.ones(e.input_shape, dtype=dtype))
            assert y.dtype == dtype and np.isfinite(y).all()


def test_int8_artifacts_are_qdq(tmp_path):
    entry = Entry("block", 8, 16, 2, 16)
    path = EntryArtifact(entry, "onnxruntime", "int8")(tmp_path / "b.onnx")
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    trt = EntryArtifact(entry, "tensorrt", "int8")(tmp_path / "t.onnx")
    zero_points = [i for i in onnx.load(str(trt)).graph.initializer
                   if i.name.endswith("zero_point") and "bias" not in i.name]  # biases are int32
    assert zero_points and all(i.data_type == onnx.TensorProto.INT8 for i in zero_points)  # symmetric int8 for TRT
    y = ort.InferenceSession(str(path)).run(None, {"x": np.ones(entry.input_shape, np.float32)})[0]
    assert y.shape == (1, 16, 8, 8)


def test_student_and_overhead_artifacts(tmp_path):
    spec = model_spec("resnet_edge_s", num_classes=4)
    p = StudentArtifact(spec, 1, "onnxruntime", "fp32")(tmp_path / "s.onnx")
    assert _run(onnx.load(str(p)), np.zeros((1, 3, 32, 32), np.float32)).shape == (1, 4)
    o = OverheadArtifact("onnxruntime", "fp32")(tmp_path / "o.onnx")
    assert [n.op_type for n in onnx.load(str(o)).graph.node] == ["Relu"]

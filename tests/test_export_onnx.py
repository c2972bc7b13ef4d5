"""Exporters: FP32 ONNX (dynamo), FP16, INT8 Q/DQ per target, metadata and the comparator."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from dass_edge.exporters.compare import FP32_TOLERANCE, Comparator, fp16_tolerance
from dass_edge.exporters.fp16 import Fp16FromOnnx, toposort
from dass_edge.exporters.int8 import QdqFromOnnx, calibration_reader, qdq_summary, quant_config
from dass_edge.exporters.onnx_export import MIN_OPSET, OnnxFromTorch, read_metadata
from test_export_support import ARCH, teacher

from dass_edge.errors import DassEdgeError
from dass_edge.latency.runners import OrtRunner, TorchRunner
from dass_edge.models import remap

RES = 16


@pytest.fixture(scope="module")
def student():
    return remap(teacher(resolution=RES), ARCH).eval()


@pytest.fixture(scope="module")
def images():
    return torch.randn(64, 3, RES, RES, generator=torch.Generator().manual_seed(1)).numpy()


@pytest.fixture(scope="module")
def fp32(student, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "s.onnx"
    return OnnxFromTorch(student, path, RES, metadata={"arch": json.dumps(ARCH.to_dict()), "resolution": str(RES)})()


def test_fp32_onnx_is_checked_dynamic_single_file_with_metadata(fp32):
    model = onnx.load(str(fp32))
    onnx.checker.check_model(model, full_check=True)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= MIN_OPSET
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, RES, RES]
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    assert list(fp32.parent.iterdir()) == [fp32]  # one file, no external data
    meta = read_metadata(model)
    assert json.loads(meta["arch"]) == ARCH.to_dict() and meta["resolution"] == str(RES)


def test_fp32_parity_for_several_batch_sizes(student, fp32, images):
    for n in (1, 5, 64):
        res = Comparator.run([TorchRunner(student, threads=None), OrtRunner(fp32)], images[:n])
        assert res[0].max_abs == 0.0
        assert res[1].max_abs <= FP32_TOLERANCE and res[1].agreement == 100.0


def test_export_refuses_training_mode_and_old_opset(student, tmp_path):
    with pytest.raises(DassEdgeError, match="opset"):
        OnnxFromTorch(student, tmp_path / "x.onnx", RES, opset=13)
    student.train()
    try:
        with pytest.raises(DassEdgeError, match="eval mode"):
            OnnxFromTorch(student, tmp_path / "x.onnx", RES)()
    finally:
        student.eval()


def test_fp16_keeps_float32_io_and_stays_within_tolerance(student, fp32, images, tmp_path):
    path = Fp16FromOnnx(fp32, tmp_path / "s.fp16.onnx")()
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)  # re-sorted: the converter's casts come last
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    conv_weights = [t for t in model.graph.initializer if len(t.dims) == 4]
    assert conv_weights and all(t.data_type == onnx.TensorProto.FLOAT16 for t in conv_weights)
    assert read_metadata(model)["precision"] == "fp16" and "arch" in read_metadata(model)
    ref, half = Comparator.run([TorchRunner(student, threads=None), OrtRunner(path)], images)
    assert 0 < half.max_abs <= fp16_tolerance(ref.abs_max)


def test_fp16_io_can_be_fp16_when_asked(student, fp32, images, tmp_path):
    path = Fp16FromOnnx(fp32, tmp_path / "h.onnx", keep_io_types=False)()
    model = onnx.load(str(path))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    ref, half = Comparator.run([TorchRunner(student, threads=None), OrtRunner(path)], images)
    assert half.max_abs <= fp16_tolerance(ref.abs_max)


def test_toposort_orders_nodes_after_their_producers():
    a = onnx.helper.make_node("Relu", ["x"], ["a"])
    b = onnx.helper.make_node("Relu", ["a"], ["y"])
    graph = onnx.helper.make_graph(
        [b, a], "g", [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    toposort(graph)
    assert [n.output[0] for n in graph.node] == ["a", "y"]


def test_int8_x86_is_u8_activations_s8_per_channel_weights(student, fp32, images, tmp_path):
    path = QdqFromOnnx(fp32, tmp_path / "s.int8.onnx", images, quant_config("x86"))()
    summary = qdq_summary(path)
    assert set(summary["activation_types"]) == {"UINT8"} and set(summary["weight_types"]) == {"INT8"}
    assert summary["quantize_nodes"] > 0 and summary["dequantize_nodes"] > summary["quantize_nodes"]
    model = onnx.load(str(path))
    inits = {t.name: t for t in model.graph.initializer}
    per_channel = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits
                   and len(inits[n.input[0]].dims) == 4 and len(inits[n.input[1]].dims) == 1]
    assert per_channel, "conv weights must be quantized per output channel"
    assert read_metadata(model)["precision"] == "int8" and "arch" in read_metadata(model)
    assert not list(tmp_path.glob(".*")), "the pre-processed intermediate model must be removed"
    ref, q = Comparator.run([TorchRunner(student, threads=None), OrtRunner(path)], images)
    assert q.agreement >= 50.0 and q.max_abs < ref.abs_max


def test_int8_tensorrt_is_symmetric_s8s8_with_qdq_on_residual_adds(fp32, images, tmp_path):
    path = QdqFromOnnx(fp32, tmp_path / "s.trt.onnx", images, quant_config("tensorrt"))()
    summary = qdq_summary(path)
    assert set(summary["activation_types"]) == {"INT8"} and set(summary["weight_types"]) == {"INT8"}
    assert summary["activation_zero_points_all_zero"] is True
    assert summary["adds"] == sum(ARCH.depths) and summary["adds_with_qdq_inputs"] == summary["adds"]
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "Relu" in ops  # kept for TensorRT to fuse


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_int8_other_calibration_methods(fp32, images, tmp_path, method, capsys):
    path = QdqFromOnnx(fp32, tmp_path / f"{method}.onnx", images[:16], quant_config("x86", method))()
    assert capsys.readouterr().out == ""  # onnxruntime's calibrators print; stdout must stay clean for --json
    assert qdq_summary(path)["quantize_nodes"] > 0
    assert method in read_metadata(path)["quantization"]


def test_quant_config_and_reader_reject_bad_input():
    with pytest.raises(DassEdgeError, match="calibration method"):
        quant_config("x86", "kl")
    with pytest.raises(DassEdgeError, match="INT8 target"):
        quant_config("tpu")
    with pytest.raises(DassEdgeError, match="calibration images"):
        calibration_reader(np.zeros((0, 3, RES, RES), np.float32))
    assert quant_config("arm").activation_type == "QInt8"


def test_calibration_reader_batches_all_images():
    reader = calibration_reader(np.zeros((70, 3, 4, 4), np.float32), batch_size=32)
    sizes = []
    while (batch := reader.get_next()) is not None:
        sizes.append(len(batch["input"]))
    assert sizes == [32, 32, 6]


class _Fixed:
    """A runner returning fixed logits, to check the comparator's arithmetic."""

    def __init__(self, name, logits):
        self.name, self.logits, self.pos = name, logits, 0

    def __enter__(self):
        self.pos = 0
        return self

    def __exit__(self, *exc):
        pass

    def infer(self, x):
        out = self.logits[self.pos : self.pos + len(x)]
        self.pos += len(x)
        return out


def test_comparator_parity_top1_and_agreement():
    ref = np.array([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0], [0.0, 2.0]], np.float32)
    other = ref.copy()
    other[1] = [1.5, 1.0]  # flips one prediction; largest difference 1.5
    labels = np.array([0, 1, 1, 1])
    rows = Comparator.run([_Fixed("ref", ref), _Fixed("other", other)], np.zeros((4, 1)), labels, batch_size=3)
    assert rows[0].top1 == 75.0 and rows[0].max_abs == 0.0 and rows[0].abs_max == 3.0
    assert rows[1].max_abs == pytest.approx(1.5) and rows[1].top1 == 50.0 and rows[1].agreement == 75.0
    assert Comparator.run([_Fixed("r", ref)], np.zeros((4, 1)))[0].top1 is None

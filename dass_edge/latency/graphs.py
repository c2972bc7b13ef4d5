"""ONNX graphs of LUT entries and whole students, written directly with ``onnx.helper``.

Why not ``torch.onnx.export``? Profiling a space means hundreds of tiny models: the dynamo exporter
takes ~2 s each here and the legacy one ~80 ms and is deprecated, while building the graph directly
takes about a millisecond. The graphs are what an exported model of this family becomes once batch
norm is folded (Conv+bias, Relu, Add, MaxPool, GlobalAveragePool, Gemm); ``tests/test_latency_graphs.py``
checks them against :class:`dass_edge.models.ResNet` numerically, weights included.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from dass_edge.errors import DassEdgeError
from dass_edge.latency.entries import Entry
from dass_edge.spec import ModelSpec, block_layout

__all__ = ["OPSET", "PRECISIONS", "ParamSource", "entry_model", "random_params", "spec_model", "state_dict_params"]

OPSET = 17
PRECISIONS = ("fp32", "fp16", "int8")
_BN_EPS = 1e-5

#: ``source(conv_or_fc_name, bn_name_or_None, weight_shape) -> (weight, bias)``, BN already folded.
ParamSource = Callable[[str, str | None, tuple[int, ...]], tuple[np.ndarray, np.ndarray]]


def random_params(seed: int = 0) -> ParamSource:
    """He-scaled random weights: latency does not depend on values, but fp16 must not overflow."""
    rng = np.random.default_rng(seed)

    def source(name: str, bn: str | None, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        fan_in = int(np.prod(shape[1:]))
        w = rng.standard_normal(shape).astype(np.float32) * np.float32(np.sqrt(2.0 / fan_in))
        return w, (rng.standard_normal(shape[0]) * 0.01).astype(np.float32)

    return source


def state_dict_params(state: dict) -> ParamSource:
    """Weights of a torch state dict (torchvision names), with eval-mode batch norm folded into the conv."""

    def arr(k: str) -> np.ndarray:
        return state[k].detach().cpu().numpy().astype(np.float32)

    def source(name: str, bn: str | None, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        w = arr(f"{name}.weight")
        if bn is None:
            return w, arr(f"{name}.bias")
        scale = arr(f"{bn}.weight") / np.sqrt(arr(f"{bn}.running_var") + _BN_EPS)
        bias = arr(f"{bn}.bias") - arr(f"{bn}.running_mean") * scale
        return (w * scale.reshape(-1, 1, 1, 1)).astype(np.float32), bias.astype(np.float32)

    return source


class _Graph:
    """A tiny graph writer: unique tensor names, initializers, nodes."""

    def __init__(self, params: ParamSource, dtype: np.dtype) -> None:
        self.params, self.dtype = params, dtype
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0

    def _name(self, base: str) -> str:
        self._n += 1
        return f"{base}_{self._n}"

    def _const(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(value.astype(self.dtype), name))
        return name

    def op(self, op_type: str, inputs: list[str], **attrs) -> str:
        out = self._name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], **attrs))
        return out

    def conv(self, x: str, name: str, bn: str, cin: int, cout: int, k: int, stride: int) -> str:
        w, b = self.params(name, bn, (cout, cin, k, k))
        return self.op("Conv", [x, self._const(f"{name}.weight", w), self._const(f"{name}.bias", b)],
                       kernel_shape=[k, k], strides=[stride, stride], pads=[k // 2] * 4)

    def stem(self, x: str, kind: str, cin: int, width: int) -> str:
        if kind == "small":
            return self.op("Relu", [self.conv(x, "conv1", "bn1", cin, width, 3, 1)])
        y = self.op("Relu", [self.conv(x, "conv1", "bn1", cin, width, 7, 2)])
        return self.op("MaxPool", [y], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])

    def block(self, x: str, prefix: str, cin: int, cout: int, stride: int) -> str:
        y = self.op("Relu", [self.conv(x, f"{prefix}conv1", f"{prefix}bn1", cin, cout, 3, stride)])
        y = self.conv(y, f"{prefix}conv2", f"{prefix}bn2", cout, cout, 3, 1)
        if stride != 1 or cin != cout:
            x = self.conv(x, f"{prefix}downsample.0", f"{prefix}downsample.1", cin, cout, 1, stride)
        return self.op("Relu", [self.op("Add", [y, x])])

    def head(self, x: str, cin: int, classes: int) -> str:
        y = self.op("Flatten", [self.op("GlobalAveragePool", [x])], axis=1)
        w, b = self.params("fc", None, (classes, cin))
        return self.op("Gemm", [y, self._const("fc.weight", w), self._const("fc.bias", b)], transB=1)

    def model(self, x_shape: tuple[int, ...], y: str, y_shape: tuple[int, ...], name: str) -> onnx.ModelProto:
        elem = TensorProto.FLOAT16 if self.dtype == np.float16 else TensorProto.FLOAT
        # Rename the last output so the graph output has a fixed name.
        self.nodes[-1].output[0] = "y"
        graph = helper.make_graph(self.nodes, name, [helper.make_tensor_value_info("x", elem, list(x_shape))],
                                  [helper.make_tensor_value_info("y", elem, list(y_shape))], self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="dass-edge")
        model.ir_version = 8  # readable by onnxruntime >= 1.14 and TensorRT 8.6+
        return model


def _dtype(precision: str) -> np.dtype:
    if precision not in PRECISIONS:
        raise DassEdgeError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    # int8 models start as fp32 graphs and are quantized to Q/DQ afterwards (see quantize.py).
    return np.dtype(np.float16 if precision == "fp16" else np.float32)


def entry_model(entry: Entry, precision: str = "fp32", params: ParamSource | None = None) -> onnx.ModelProto:
    """A one-piece model measuring ``entry`` (input named ``x``, output ``y``)."""
    g = _Graph(params or random_params(0), _dtype(precision))
    b, c, r = entry.batch, entry.in_ch, entry.resolution
    if entry.kind == "stem":
        y = g.stem("x", entry.stem, c, entry.out_ch)
        out_r = -(-r // entry.stride)
        return g.model((b, c, r, r), y, (b, entry.out_ch, out_r, out_r), entry.key)
    if entry.kind == "block":
        y = g.block("x", "", c, entry.out_ch, entry.stride)
        out_r = -(-r // entry.stride)
        return g.model((b, c, r, r), y, (b, entry.out_ch, out_r, out_r), entry.key)
    if entry.kind == "head":
        return g.model((b, c, r, r), g.head("x", c, entry.out_ch), (b, entry.out_ch), entry.key)
    raise DassEdgeError(f"unknown entry kind {entry.kind!r}")


def spec_model(spec: ModelSpec, batch: int = 1, precision: str = "fp32",
               params: ParamSource | None = None) -> onnx.ModelProto:
    """The whole model of ``spec`` as one graph (same operators as the entries, end to end)."""
    g = _Graph(params or random_params(0), _dtype(precision))
    y = g.stem("x", spec.stem, spec.in_chans, spec.stem_width)
    layout = iter(block_layout(spec))
    for s, blocks in enumerate(spec.stages):
        for b in range(len(blocks)):
            cin, cout, stride, _res, _proj = next(layout)
            y = g.block(y, f"layer{s + 1}.{b}.", cin, cout, stride)
    y = g.head(y, spec.feature_width, spec.num_classes)
    r = spec.resolution
    return g.model((batch, spec.in_chans, r, r), y, (batch, spec.num_classes), "student")

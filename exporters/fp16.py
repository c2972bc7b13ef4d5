"""FP16 ONNX from an FP32 ONNX file (for GPU targets), keeping float32 inputs/outputs unless asked.

Uses onnxruntime's float16 converter, which appends its input/output ``Cast`` nodes at the end of
the node list; ONNX requires topological order, so the graph is re-sorted before checking.
"""

from __future__ import annotations

from pathlib import Path

import onnx
from dass_edge.exporters.base import BaseLoader, resolve
from dass_edge.exporters.onnx_export import check_onnx, stamp_metadata

__all__ = ["Fp16FromOnnx", "toposort"]


class Fp16FromOnnx(BaseLoader[Path]):
    """Convert ``source`` (a path or a loader making one) to FP16 at ``path``.

    Args:
        source: the FP32 ONNX model.
        path: where to write the FP16 model.
        keep_io_types: keep float32 graph inputs/outputs (casts inside the graph); default True so
            callers feed the same arrays as for FP32.
    """

    def __init__(self, source: str | Path | BaseLoader[Path], path: str | Path, keep_io_types: bool = True) -> None:
        self.source, self.path, self.keep_io_types = source, Path(path), keep_io_types

    def call_impl(self) -> Path:
        from onnxruntime.transformers.float16 import convert_float_to_float16

        model = onnx.load(str(resolve(self.source)))
        half = convert_float_to_float16(model, keep_io_types=self.keep_io_types, disable_shape_infer=False)
        toposort(half.graph)
        stamp_metadata(half, {"precision": "fp16"})
        check_onnx(half)
        onnx.save_model(half, str(self.path), save_as_external_data=False)
        return self.path


def toposort(graph: onnx.GraphProto) -> None:
    """Reorder ``graph.node`` so every node comes after the producers of its inputs (in place)."""
    ready = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        blocked = []
        for node in pending:
            if all(name in ready for name in node.input):
                ordered.append(node)
                ready.update(node.output)
            else:
                blocked.append(node)
        if len(blocked) == len(pending):
            raise ValueError(f"graph has a cycle or a dangling input at node {blocked[0].name!r}")
        pending = blocked
    copies = [onnx.NodeProto.FromString(n.SerializeToString()) for n in ordered]
    del graph.node[:]
    graph.node.extend(copies)

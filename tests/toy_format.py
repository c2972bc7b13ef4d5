"""A toy export format in one file: the FP32 model as onnxruntime's offline-optimized ONNX.

Importing this module registers it; ``dass_edge.export.export(..., fmt="onnx-ort-opt")`` then writes,
verifies (parity against PyTorch), measures and records it without any other file knowing its name.
"""

from __future__ import annotations

from dass_edge.exporters.formats import register_format

from dass_edge.export import ExportJob, artifact_row

NAME = "onnx-ort-opt"


@register_format(NAME, "FP32 ONNX with onnxruntime's basic graph optimizations applied offline")
def ort_optimized(job: ExportJob, fp32: dict) -> list[dict]:
    import onnxruntime as ort

    job.step("optimizing the ONNX graph offline (onnxruntime, basic level)")
    name = f"{job.stem}.ort-opt.onnx"
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    opts.optimized_model_filepath = str(job.stage.path(name))
    ort.InferenceSession(str(job.stage.path(fp32["file"])), opts, providers=["CPUExecutionProvider"])
    return [artifact_row(NAME, "fp32", name, fp32["file"])]

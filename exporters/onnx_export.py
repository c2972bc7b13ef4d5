"""FP32 ONNX from a PyTorch model: dynamo exporter, dynamic batch, one file, checked, with metadata.

The metadata (arch, teacher checksum, class names, normalization, resolution, dass-edge version)
travels inside the file's ``metadata_props``, so a deployed model still says what it is and how to
feed it even when ``export.json`` is left behind.
"""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path

import onnx
import torch
from dass_edge.exporters.base import BaseLoader

from dass_edge.errors import DassEdgeError

__all__ = [
    "INPUT_NAME", "MIN_OPSET", "OUTPUT_NAME", "OnnxFromTorch", "check_onnx", "metadata_props", "read_metadata",
    "stamp_metadata", "student_metadata",
]

INPUT_NAME, OUTPUT_NAME = "input", "logits"
MIN_OPSET, DEFAULT_OPSET = 17, 20
_PREFIX = "dass_edge."


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The dynamo exporter logs optional-op notices (torchvision ops) and deprecation warnings; hide them."""
    names = ("torch.onnx", "torch.export", "torch._export", "onnxscript")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


class OnnxFromTorch(BaseLoader[Path]):
    """Export ``model`` (eval mode, NCHW float input) to ``path`` and return the path.

    Args:
        model: the PyTorch module; exported as is (put it in eval mode first).
        path: where to write the single-file ONNX model.
        resolution, in_chans: the input's spatial side and channels; batch stays dynamic.
        metadata: string-valued entries stored in ``metadata_props`` (keys get a ``dass_edge.`` prefix).
        opset: ONNX opset (>= 17).

    Raises:
        DassEdgeError: the export fails or the result does not pass ``onnx.checker``.
    """

    def __init__(self, model: torch.nn.Module, path: str | Path, resolution: int, in_chans: int = 3,
                 metadata: Mapping[str, str] | None = None, opset: int = DEFAULT_OPSET) -> None:
        if opset < MIN_OPSET:
            raise DassEdgeError(f"opset {opset} is too old; use {MIN_OPSET} or newer")
        self.model, self.path, self.opset = model, Path(path), opset
        self.shape = (2, in_chans, resolution, resolution)
        self.metadata = dict(metadata or {})

    def call_impl(self) -> Path:
        if self.model.training:
            raise DassEdgeError("export needs the model in eval mode (BatchNorm must use running statistics)")
        example = torch.zeros(self.shape)
        batch = torch.export.Dim("batch", min=1)
        try:
            with _quiet_exporter(), torch.no_grad():
                program = torch.onnx.export(
                    self.model, (example,), dynamo=True, opset_version=self.opset, input_names=[INPUT_NAME],
                    output_names=[OUTPUT_NAME], dynamic_shapes=({0: batch},), verbose=False, optimize=True,
                )
        except Exception as e:  # the exporter raises many internal error types
            raise DassEdgeError(f"ONNX export failed ({type(e).__name__}: {str(e).splitlines()[0]})") from None
        proto = program.model_proto
        stamp_metadata(proto, self.metadata)
        check_onnx(proto)
        onnx.save_model(proto, str(self.path), save_as_external_data=False)
        return self.path


def check_onnx(model: onnx.ModelProto | str | Path) -> None:
    """Run ``onnx.checker`` with full shape inference; a failure is a user-facing error."""
    try:
        onnx.checker.check_model(model if isinstance(model, onnx.ModelProto) else str(model), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise DassEdgeError(f"exported ONNX model does not pass onnx.checker: {str(e).splitlines()[0]}") from None


def stamp_metadata(model: onnx.ModelProto, metadata: Mapping[str, str]) -> onnx.ModelProto:
    """Set ``dass_edge.*`` entries in ``metadata_props`` (replacing earlier ones of the same key)."""
    wanted = {k if k.startswith(_PREFIX) else _PREFIX + k: str(v) for k, v in metadata.items()}
    kept = [(p.key, p.value) for p in model.metadata_props if p.key not in wanted]
    del model.metadata_props[:]
    for key, value in [*kept, *sorted(wanted.items())]:
        model.metadata_props.add(key=key, value=value)
    return model


def read_metadata(model: onnx.ModelProto | str | Path) -> dict[str, str]:
    """The ``dass_edge.*`` metadata of a model, without the prefix."""
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model), load_external_data=False)
    return {p.key.removeprefix(_PREFIX): p.value for p in model.metadata_props if p.key.startswith(_PREFIX)}


def student_metadata(spec_dict: dict, meta: dict, arch: dict, version: str) -> dict:
    """What a deployment needs to feed the student and trace it back (structured; stored in export.json)."""
    return {
        "version": version,
        "arch": arch,
        "teacher_sha256": meta.get("teacher_sha256"),
        "task": meta.get("task") or meta.get("data_dir"),
        "class_names": list(spec_dict.get("class_names", [])),
        "mean": list(spec_dict["mean"]),
        "std": list(spec_dict["std"]),
        "resolution": int(spec_dict["resolution"]),
        "input": f"{INPUT_NAME}: float32 NCHW RGB, (pixel / 255 - mean) / std, batch dynamic",
    }


def metadata_props(metadata: Mapping[str, object], spec_dict: dict | None = None) -> dict[str, str]:
    """``metadata_props`` strings: text as is, everything else as JSON (plus the full spec when given)."""
    props = {k: v if isinstance(v, str) else json.dumps(v, sort_keys=True) for k, v in metadata.items()}
    if spec_dict is not None:
        props["spec"] = json.dumps(spec_dict, sort_keys=True)
    return props

"""Export formats, registered by name: each is a chain of loader steps that starts at the FP32 ONNX model.

timm-style: ``@register_format("name", ...)`` stores a function ``make(job, fp32_row) -> rows`` that runs
the loader steps the format needs (``job.fp16``, ``job.int8``, ``job.engine``, or its own) and returns
the artifact rows it added. :func:`dass_edge.export.export` looks the format up here, so a new format
(TFLite, CoreML, ...) is one file with one decorated function; verification, measurement, checksums and
``export.json`` come for free.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dass_edge.errors import DassEdgeError

if TYPE_CHECKING:
    from dass_edge.export import ExportJob

__all__ = ["FORMATS", "ExportFormat", "get_format", "register_format", "unregister_format"]

Make = Callable[["ExportJob", dict], list[dict]]


@dataclass(frozen=True)
class ExportFormat:
    """One ``--format``.

    Args:
        name: the ``--format`` value.
        description: one line for help texts.
        make: ``make(job, fp32_row) -> rows`` writes the format's artifacts (staged) and returns their rows.
        calibrate: ``calibrate(job) -> bool``: the chain quantizes to INT8 and needs calibration images.
        files: extra files the chain stages besides its artifacts (committed with them).
    """

    name: str
    description: str
    make: Make
    calibrate: Callable[[ExportJob], bool] = lambda job: False
    files: tuple[str, ...] = ()


#: The registry (``name -> ExportFormat``), in registration order; ``", ".join(FORMATS)`` lists the names.
FORMATS: dict[str, ExportFormat] = {}


def register_format(name: str, description: str, *, calibrate: Callable[[Any], bool] | None = None,
                    files: tuple[str, ...] = ()) -> Callable[[Make], Make]:
    """Register ``make`` as format ``name``; a name registered twice raises ``ValueError``."""

    def deco(make: Make) -> Make:
        if name in FORMATS:
            raise ValueError(f"export format {name!r} registered twice")
        FORMATS[name] = ExportFormat(name, description, make, calibrate or (lambda job: False), tuple(files))
        return make

    return deco


def unregister_format(name: str) -> None:
    """Remove a format (tests that register toys clean up with this)."""
    FORMATS.pop(name, None)


def get_format(name: str) -> ExportFormat:
    """The format called ``name``.

    Raises:
        DassEdgeError: unknown format (the message lists the known ones).
    """
    if name not in FORMATS:
        raise DassEdgeError(f"unknown format {name!r}; choose one of {', '.join(FORMATS)}")
    return FORMATS[name]


# --- the built-in chains -------------------------------------------------------------------------------------
@register_format("onnx", "FP32 ONNX (dynamic batch, metadata inside)")
def _onnx(job: ExportJob, fp32: dict) -> list[dict]:
    return []


@register_format("onnx-fp16", "FP16 ONNX converted from the FP32 model")
def _onnx_fp16(job: ExportJob, fp32: dict) -> list[dict]:
    return [job.fp16(fp32)]


@register_format("onnx-int8", "INT8 Q/DQ ONNX, statically calibrated for the profile's INT8 flavour",
                 calibrate=lambda job: True)
def _onnx_int8(job: ExportJob, fp32: dict) -> list[dict]:
    return [job.int8(fp32, job.target.quant_target)]


@register_format("tensorrt", "TensorRT engine (from INT8 Q/DQ or FP16 ONNX), built here or on --host",
                 calibrate=lambda job: job.precision == "int8", files=("trt_build.py",))
def _tensorrt(job: ExportJob, fp32: dict) -> list[dict]:
    if job.target.backend != "tensorrt":
        job.notes.append(f"device {job.target.device!r} measures on {job.target.backend}, not TensorRT; pass a "
                         "TensorRT profile (e.g. --device jetson-orin-nano --host user@jetson) for engine latency")
    ready = job.int8(fp32, "tensorrt") if job.precision == "int8" else job.fp16(fp32)
    engine = job.engine(ready)
    return [ready] + ([engine] if engine else [])

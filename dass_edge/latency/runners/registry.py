"""The backend registry: one table that says everything dass-edge knows about a latency backend.

Modelled on nn-Meter's ``BACKENDS_PATH`` / ``register_backend``: a backend is a name mapped to the module
it needs, its runner class (imported lazily, by ``"module:Class"``), the file it measures, its INT8
flavour, its precisions and a version probe. The runner factory, the remote agent, ``sysinfo``, profile
validation, artifact writers, export measurement and next-step hints all read this table, so adding a
backend (OpenVINO, TFLite, ...) is one runner file plus one :func:`register_backend` call.

Standard library only, relative imports: shipped to devices inside the agent.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from .base import LatencyRunner, RunnerError

__all__ = ["Backend", "backend_names", "get_backend", "list_backends", "register_backend", "unregister_backend"]

#: INT8 flavours: ``tensorrt`` = symmetric S8S8 Q/DQ (what TensorRT and GPU execution providers take);
#: ``host`` = by the CPU architecture (x86 U8S8, Arm S8S8); ``None`` = the backend measures no INT8.
INT8_FLAVOURS = ("tensorrt", "host")


@dataclass(frozen=True)
class Backend:
    """One latency backend.

    Args:
        name: the profile's ``backend:`` value.
        module: the Python module the backend needs on the measuring device (checked by the agent).
        runner: ``"module:Class"`` of its :class:`LatencyRunner` (relative modules resolve inside this
            package), or the class itself. The class builds itself from profile settings via
            ``from_settings(artifact, settings, input_shape)``.
        suffix: the file format it measures (``.onnx``, ``.pt2``); decides which artifact writer runs.
        precisions: precisions a profile may ask of it.
        int8: its INT8 flavour (see :data:`INT8_FLAVOURS`), or ``None``.
        probe: ``"module:function"`` returning the installed version (a string, or a dict with
            ``version``), or ``None`` when missing; default: ``module.__version__``.
        gpu: it always measures on a GPU (the table names the GPU, not the CPU).
        probe_always: report its version in every device record, not only when it is the one measuring
            (cheap imports only; torch is probed only when used or already imported).
        options: profile keys only this backend reads (e.g. onnxruntime ``providers``).
        builds_on_device: its deployable artifact must be built on the device (engines); hints then
            point the export at ``--host``.
        export_format: the ``dass-edge export --format`` that makes its deployable artifact, if fixed.
    """

    name: str
    module: str
    runner: str | type
    suffix: str
    precisions: tuple[str, ...]
    int8: str | None = None
    probe: str | None = None
    gpu: bool = False
    probe_always: bool = False
    options: tuple[str, ...] = ()
    builds_on_device: bool = False
    export_format: str | None = None

    def runner_class(self) -> type[LatencyRunner]:
        """Import and return the runner class (only now: backends stay lazy)."""
        if not isinstance(self.runner, str):
            return self.runner
        return _load(self.runner)

    def make_runner(self, settings: dict[str, Any], artifact: str,
                    input_shape: tuple[int, ...] | None = None) -> LatencyRunner:
        return self.runner_class().from_settings(artifact, settings, input_shape)

    def version(self) -> Any:
        """The installed version (string or dict), or ``None`` where the backend is missing."""
        if self.probe is not None:
            return _load(self.probe)()
        try:
            return getattr(importlib.import_module(self.module), "__version__", "unknown")
        except ImportError:
            return None


def _load(path: str) -> Any:
    module, _, attr = path.partition(":")
    mod = importlib.import_module(module, package=__package__ if module.startswith(".") else None)
    return getattr(mod, attr)


_BACKENDS: dict[str, Backend] = {}


def register_backend(backend: Backend) -> Backend:
    """Add a backend; a name registered twice is a bug, so it raises ``ValueError``."""
    if backend.name in _BACKENDS:
        raise ValueError(f"backend {backend.name!r} registered twice")
    if backend.int8 is not None and backend.int8 not in INT8_FLAVOURS:
        raise ValueError(f"backend {backend.name!r}: int8 flavour {backend.int8!r} is not one of {INT8_FLAVOURS}")
    if ("int8" in backend.precisions) != (backend.int8 is not None):
        raise ValueError(f"backend {backend.name!r}: give an int8 flavour exactly when it measures int8")
    _BACKENDS[backend.name] = backend
    return backend


def unregister_backend(name: str) -> None:
    """Remove a backend (tests that register toys clean up with this)."""
    _BACKENDS.pop(name, None)


def get_backend(name: str) -> Backend:
    """The backend called ``name``.

    Raises:
        RunnerError: no such backend (the message lists the known ones).
    """
    try:
        return _BACKENDS[str(name)]
    except KeyError:
        raise RunnerError(f"unknown backend {name!r}; choose one of {', '.join(_BACKENDS)}") from None


def list_backends() -> list[Backend]:
    """Every registered backend, in registration order."""
    return list(_BACKENDS.values())


def backend_names() -> list[str]:
    return list(_BACKENDS)


register_backend(Backend(
    "onnxruntime", module="onnxruntime", runner=".onnxrt:OrtRunner", suffix=".onnx",
    precisions=("fp32", "fp16", "int8"), int8="host", probe=".onnxrt:ort_info", probe_always=True,
    options=("providers",),
))
register_backend(Backend(
    "torch", module="torch", runner=".torch_runner:TorchRunner", suffix=".pt2", precisions=("fp32", "fp16"),
    probe=".torch_runner:torch_version", options=("device", "cuda_graph"),
))
register_backend(Backend(
    "tensorrt", module="tensorrt", runner=".tensorrt:TrtRunner", suffix=".onnx",
    precisions=("fp32", "fp16", "int8"), int8="tensorrt", probe=".tensorrt:trt_version", gpu=True,
    probe_always=True, options=("workspace_mb",), builds_on_device=True, export_format="tensorrt",
))

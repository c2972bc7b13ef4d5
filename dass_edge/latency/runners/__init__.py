"""Latency runners: one small class per backend behind one contract (Polygraphy-style).

Everything in this subpackage imports only the standard library and numpy at module level and uses
relative imports, so the remote agent ships it unchanged to a device that has no dass-edge installed
(see :mod:`dass_edge.latency.remote`). Backends (onnxruntime, torch, tensorrt) are imported lazily and
listed in one registry (:mod:`.registry`).
"""

from __future__ import annotations

from .base import BackendUnavailable, LatencyRunner, RunnerError
from .factory import make_runner
from .onnxrt import OrtRunner
from .registry import Backend, backend_names, get_backend, list_backends, register_backend, unregister_backend
from .tensorrt import TrtRunner
from .torch_runner import TorchRunner

__all__ = [
    "Backend", "BackendUnavailable", "LatencyRunner", "OrtRunner", "RunnerError", "TorchRunner", "TrtRunner",
    "backend_names", "get_backend", "list_backends", "make_runner", "register_backend", "unregister_backend",
]

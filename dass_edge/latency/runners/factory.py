"""Pick and configure a runner from a profile's backend settings (plain dict, so the agent can use it)."""

from __future__ import annotations

from typing import Any

from .base import LatencyRunner
from .registry import get_backend

__all__ = ["make_runner"]


def make_runner(settings: dict[str, Any], artifact: str, input_shape: tuple[int, ...] | None = None) -> LatencyRunner:
    """A runner for ``artifact`` configured by ``settings`` (``backend``, ``threads``, ``batch``, ...).

    The backend is looked up in the registry (:mod:`.registry`) and its runner class builds itself
    with ``from_settings``.

    Raises:
        RunnerError: unknown backend, or settings the backend's runner cannot use (e.g. a torch runner
            without an input shape).
    """
    return get_backend(str(settings.get("backend"))).make_runner(settings, artifact, input_shape)

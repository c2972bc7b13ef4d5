"""The runner contract shared by every backend.

A runner owns one loaded model (an onnxruntime session, a torch module, a TensorRT context) and its
prepared inputs. ``activate`` loads it; ``infer(x)`` runs it on given inputs and returns the outputs
(export verification: parity and top-1); ``measure`` warms up for a fixed *time* and then times single
synchronous calls on the prepared inputs (latency tables); ``deactivate`` frees it. One runner does
both, as in Polygraphy, so what is verified is what is timed. Subclasses only override the ``*_impl``
hooks, so state checks and the timing loop are written once and every backend is timed the same way.
"""

from __future__ import annotations

import abc
import time
from typing import Any

__all__ = ["BackendUnavailable", "LatencyRunner", "RunnerError"]


class RunnerError(Exception):
    """A model could not be loaded or run; the message says why."""


class BackendUnavailable(RunnerError):
    """The backend (or the execution provider / GPU it needs) is not installed here."""


class LatencyRunner(abc.ABC):
    """Base class: ``activate`` / ``measure`` / ``deactivate``, usable as a context manager.

    Args:
        name: a label used in error messages and comparisons.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.is_active = False
        self.inference_time: float | None = None  # seconds taken by the last infer()

    @classmethod
    def from_settings(cls, artifact: str, settings: dict[str, Any],
                      input_shape: tuple[int, ...] | None = None) -> LatencyRunner:
        """A runner for ``artifact`` configured by a profile's backend settings (``threads``, ``batch``, ...)."""
        raise NotImplementedError(f"{cls.__name__} cannot be configured from profile settings")

    # -- contract -----------------------------------------------------------------------------
    def activate(self) -> None:
        """Load the model and prepare inputs (a fresh session each time)."""
        if self.is_active:
            raise RunnerError(f"runner {self.name} is already active")
        self.activate_impl()
        self.is_active = True

    def infer(self, x: Any) -> Any:
        """Run once on ``x`` (a numpy batch for the single input) and return the first output as a float32
        numpy array; the call's duration is kept in ``inference_time``."""
        if not self.is_active:
            raise RunnerError(f"runner {self.name} must be activated before inference")
        t0 = time.perf_counter()
        out = self.infer_impl(x)
        self.inference_time = time.perf_counter() - t0
        return out

    def measure(self, warmup_s: float, iterations: int, min_warmup_runs: int = 2) -> list[float]:
        """Warm up for ``warmup_s`` seconds (at least ``min_warmup_runs`` calls), then time
        ``iterations`` single calls. Returns seconds per call, in call order."""
        if not self.is_active:
            raise RunnerError(f"runner {self.name} must be activated before measuring")
        if iterations < 1:
            raise RunnerError("iterations must be >= 1")
        runs, start = 0, time.perf_counter()
        while runs < min_warmup_runs or time.perf_counter() - start < warmup_s:
            self.run_impl()
            runs += 1
        return [self.time_impl() for _ in range(iterations)]

    def deactivate(self) -> None:
        """Free the session/engine (no-op when not active)."""
        if self.is_active:
            try:
                self.deactivate_impl()
            finally:
                self.is_active = False

    def __enter__(self) -> LatencyRunner:
        self.activate()
        return self

    def __exit__(self, *exc: object) -> None:
        self.deactivate()

    # -- hooks --------------------------------------------------------------------------------
    @abc.abstractmethod
    def activate_impl(self) -> None:
        """Build the session/engine and prepare inputs."""

    @abc.abstractmethod
    def run_impl(self) -> None:
        """One synchronous inference on the prepared inputs (outputs stay where they are)."""

    @abc.abstractmethod
    def infer_impl(self, x: Any) -> Any:
        """One synchronous inference on ``x``; returns the first output as a float32 numpy array."""

    def time_impl(self) -> float:
        """Seconds taken by one inference; GPU runners override this to use device events."""
        t0 = time.perf_counter()
        self.run_impl()
        return time.perf_counter() - t0

    @abc.abstractmethod
    def deactivate_impl(self) -> None:
        """Free what :meth:`activate_impl` built."""

"""torch runner: eager CPU, or CUDA timed with events and optionally replayed as a CUDA graph."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from .base import BackendUnavailable, LatencyRunner, RunnerError

__all__ = ["TorchRunner", "torch_version"]


def _torch():
    try:
        return importlib.import_module("torch")
    except ImportError as e:
        raise BackendUnavailable(f"torch is not installed ({e})") from None


def torch_version() -> str | None:
    try:
        return _torch().__version__
    except BackendUnavailable:
        return None


class TorchRunner(LatencyRunner):
    """Times a torch module on a random input.

    Args:
        model: path to a ``torch.export`` program (``.pt2``), an ``nn.Module``, or a callable returning one.
        input_shape: shape of the single input.
        device: ``"cpu"`` or ``"cuda"``.
        precision: ``"fp32"`` or ``"fp16"`` (fp16 casts module and input).
        threads: torch intra-op threads (CPU).
        cuda_graph: capture one call as a CUDA graph and time its replay (removes launch overhead).
    """

    def __init__(self, model: str | Any | Callable[[], Any], input_shape: tuple[int, ...], device: str = "cpu",
                 precision: str = "fp32", threads: int = 1, cuda_graph: bool = False, seed: int = 0) -> None:
        super().__init__(model if isinstance(model, str) else type(model).__name__)
        self.model, self.input_shape, self.device, self.precision = model, tuple(input_shape), device, precision
        self.threads, self.cuda_graph, self.seed = threads, cuda_graph, seed
        self._module = self._x = self._graph = self._events = None
        self._no_grad = None

    def activate_impl(self) -> None:
        torch = _torch()
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailable("torch here has no CUDA device")
        if self.precision not in ("fp32", "fp16"):
            raise RunnerError(f"the torch runner measures fp32 or fp16, not {self.precision}")
        torch.set_num_threads(self.threads)
        if isinstance(self.model, str):
            try:
                module = torch.export.load(self.model).module()
            except Exception as e:  # torch raises many types for a bad archive
                raise RunnerError(f"torch cannot load {self.model}: {str(e).splitlines()[0]}") from None
        else:
            is_module = isinstance(self.model, torch.nn.Module)
            module = self.model() if callable(self.model) and not is_module else self.model
        dtype = torch.float16 if self.precision == "fp16" else torch.float32
        gen = torch.Generator().manual_seed(self.seed)
        self._module = module.to(self.device, dtype)
        self._x = torch.randn(self.input_shape, generator=gen).to(self.device, dtype)
        self._no_grad = torch.inference_mode()
        self._no_grad.__enter__()
        if self.device.startswith("cuda"):
            self._events = (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
            if self.cuda_graph:
                stream = torch.cuda.Stream()
                stream.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(stream):
                    for _ in range(3):
                        self._module(self._x)
                torch.cuda.current_stream().wait_stream(stream)
                self._graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(self._graph):
                    self._module(self._x)

    def infer_impl(self) -> None:
        if self._graph is not None:
            self._graph.replay()
        else:
            self._module(self._x)
        if self._events is not None:
            _torch().cuda.synchronize()

    def time_impl(self) -> float:
        if self._events is None:
            return super().time_impl()
        start, end = self._events
        start.record()
        if self._graph is not None:
            self._graph.replay()
        else:
            self._module(self._x)
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3

    def deactivate_impl(self) -> None:
        if self._no_grad is not None:
            self._no_grad.__exit__(None, None, None)
        self._module = self._x = self._graph = self._events = self._no_grad = None

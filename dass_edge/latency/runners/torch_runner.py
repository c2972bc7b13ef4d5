"""torch runner: eager CPU, or CUDA timed with events and optionally replayed as a CUDA graph.

The same runner is the PyTorch reference of an export's parity check (``infer`` on task images).
"""

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
    """Runs a torch module: timed on a random input, or on given images (the export's reference).

    Args:
        model: path to a ``torch.export`` program (``.pt2``), an ``nn.Module``, or a callable returning one.
        input_shape: shape of the single input, for timing; ``None`` when the runner only infers.
        device: ``"cpu"`` or ``"cuda"``.
        precision: ``"fp32"`` or ``"fp16"`` (fp16 casts module and input).
        threads: torch intra-op threads (CPU) while active; ``None`` leaves torch's setting alone.
        cuda_graph: capture one call as a CUDA graph and time its replay (removes launch overhead).
        name: label in errors and comparisons.
    """

    def __init__(self, model: str | Any | Callable[[], Any], input_shape: tuple[int, ...] | None = None,
                 device: str = "cpu", precision: str = "fp32", threads: int | None = 1, cuda_graph: bool = False,
                 seed: int = 0, name: str | None = None) -> None:
        super().__init__(name or (model if isinstance(model, str) else type(model).__name__))
        self.model, self.device, self.precision = model, device, precision
        self.input_shape = tuple(input_shape) if input_shape is not None else None
        self.threads, self.cuda_graph, self.seed = threads, cuda_graph, seed
        self._module = self._x = self._graph = self._events = None
        self._no_grad = self._old_threads = None

    @classmethod
    def from_settings(cls, artifact: str, settings: dict[str, Any],
                      input_shape: tuple[int, ...] | None = None) -> TorchRunner:
        if input_shape is None:
            raise RunnerError("the torch runner needs the input shape of each model")
        return cls(artifact, tuple(input_shape), device=str(settings.get("device", "cpu")),
                   precision=str(settings.get("precision", "fp32")), threads=int(settings.get("threads", 1)),
                   cuda_graph=bool(settings.get("cuda_graph", False)))

    def activate_impl(self) -> None:
        torch = _torch()
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailable("torch here has no CUDA device")
        if self.precision not in ("fp32", "fp16"):
            raise RunnerError(f"the torch runner measures fp32 or fp16, not {self.precision}")
        if self.threads is not None:
            self._old_threads = torch.get_num_threads()
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
        if self.input_shape is not None:
            self._x = torch.randn(self.input_shape, generator=gen).to(self.device, dtype)
        self._dtype = dtype
        self._no_grad = torch.inference_mode()
        self._no_grad.__enter__()
        if self.device.startswith("cuda") and self._x is not None:
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

    def run_impl(self) -> None:
        if self._x is None:
            raise RunnerError(f"runner {self.name} has no input shape to time")
        if self._graph is not None:
            self._graph.replay()
        else:
            self._module(self._x)
        if self._events is not None:
            _torch().cuda.synchronize()

    def infer_impl(self, x: Any) -> Any:
        torch = _torch()
        out = self._module(torch.as_tensor(x).to(self.device, self._dtype))
        return out.float().cpu().numpy()

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
        if self._old_threads is not None:
            _torch().set_num_threads(self._old_threads)
        self._module = self._x = self._graph = self._events = self._no_grad = self._old_threads = None

"""Runners with one contract (activate / infer / deactivate, or ``with``): PyTorch and onnxruntime.

The comparator feeds the same arrays to each runner, so parity and top-1 are measured the same way
for every artifact. The TensorRT runner lives in :mod:`dass_edge.exporters.tensorrt`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from dass_edge.exporters.base import BaseLoader, resolve

__all__ = ["OnnxrtRunner", "Runner", "TorchRunner", "ort_session"]


class Runner(Protocol):
    name: str

    def __enter__(self) -> Runner: ...

    def __exit__(self, *exc: object) -> None: ...

    def infer(self, x: np.ndarray) -> np.ndarray: ...


class _RunnerBase:
    name = "runner"

    def __enter__(self):
        self.activate()
        return self

    def __exit__(self, *exc: object) -> None:
        self.deactivate()

    def activate(self) -> None:
        pass

    def deactivate(self) -> None:
        pass


class TorchRunner(_RunnerBase):
    """The PyTorch reference: the model in eval mode, float32, on CPU."""

    def __init__(self, model: torch.nn.Module, name: str = "pytorch") -> None:
        self.model, self.name = model, name

    def infer(self, x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).float().numpy()


def ort_session(path: str | Path, threads: int | None = None):
    """An onnxruntime CPU session (``threads`` intra-op threads; default: onnxruntime's choice)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


class OnnxrtRunner(_RunnerBase):
    """An ONNX file (path or loader) on onnxruntime's CPU provider; inputs are cast to the model's input type."""

    def __init__(self, model: str | Path | BaseLoader[Path], name: str = "onnxruntime",
                 threads: int | None = None) -> None:
        self.model, self.name, self.threads = model, name, threads
        self._session = None

    def activate(self) -> None:
        self._session = ort_session(resolve(self.model), self.threads)
        inp = self._session.get_inputs()[0]
        self._input = inp.name
        self._dtype = np.float16 if inp.type == "tensor(float16)" else np.float32  # FP16 models may take fp16

    def infer(self, x: np.ndarray) -> np.ndarray:
        if self._session is None:
            raise RuntimeError("runner is not active; use it in a with-block")
        out = self._session.run(None, {self._input: np.ascontiguousarray(x, dtype=self._dtype)})[0]
        return np.asarray(out, dtype=np.float32)

    def deactivate(self) -> None:
        self._session = None

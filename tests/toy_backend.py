"""A toy latency backend in one file: ONNX run by onnx's own reference evaluator (numpy, no onnxruntime).

Importing this module registers it; ``test_registries.py`` then profiles a device with it and lists it
with ``dass-edge devices`` without any other file knowing its name.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dass_edge.latency.runners import Backend, LatencyRunner, register_backend

__all__ = ["NAME", "ReferenceRunner"]

NAME = "onnx-reference"


class ReferenceRunner(LatencyRunner):
    """``onnx.reference.ReferenceEvaluator`` on one ONNX file (float32 only)."""

    def __init__(self, path: str, batch: int = 1, seed: int = 0) -> None:
        super().__init__(str(path))
        self.path, self.batch, self.seed = str(path), batch, seed
        self._ref = None
        self._feed: dict[str, np.ndarray] = {}

    @classmethod
    def from_settings(cls, artifact: str, settings: dict[str, Any],
                      input_shape: tuple[int, ...] | None = None) -> ReferenceRunner:
        return cls(artifact, batch=int(settings.get("batch", 1)))

    def activate_impl(self) -> None:
        import onnx
        from onnx.reference import ReferenceEvaluator

        model = onnx.load(self.path)
        self._ref = ReferenceEvaluator(model)
        rng = np.random.default_rng(self.seed)
        for inp in model.graph.input:
            shape = [d.dim_value or self.batch for d in inp.type.tensor_type.shape.dim]
            self._feed[inp.name] = rng.standard_normal(shape).astype(np.float32)

    def run_impl(self) -> None:
        self._ref.run(None, self._feed)

    def infer_impl(self, x: Any) -> np.ndarray:
        (name,) = self._feed
        return np.asarray(self._ref.run(None, {name: np.asarray(x, dtype=np.float32)})[0], dtype=np.float32)

    def deactivate_impl(self) -> None:
        self._ref, self._feed = None, {}


register_backend(Backend(NAME, module="onnx", runner=ReferenceRunner, suffix=".onnx", precisions=("fp32",)))

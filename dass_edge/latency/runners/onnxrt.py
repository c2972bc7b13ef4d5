"""onnxruntime runner: CPU execution provider here; CUDA / TensorRT execution providers where installed."""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

from .base import BackendUnavailable, LatencyRunner, RunnerError

__all__ = ["OrtRunner", "ort_info", "ort_version"]

_DTYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(uint8)": np.uint8, "tensor(int8)": np.int8,
}


def _ort():
    try:
        return importlib.import_module("onnxruntime")
    except ImportError as e:
        raise BackendUnavailable(f"onnxruntime is not installed ({e}); pip install onnxruntime") from None


def ort_version() -> str | None:
    try:
        return _ort().__version__
    except BackendUnavailable:
        return None


def ort_info() -> dict[str, Any] | None:
    """Version and available execution providers (the registry's probe), or None when not installed."""
    try:
        ort = _ort()
    except BackendUnavailable:
        return None
    return {"version": ort.__version__, "providers": ort.get_available_providers()}


class OrtRunner(LatencyRunner):
    """Runs an ONNX model with ``session.run``: timed on random inputs, or on given images for parity.

    Args:
        model: path to an ONNX file (``str`` or path-like), or its bytes.
        threads: intra-op threads (inter-op is 1, execution sequential) so results are reproducible;
            ``None`` leaves onnxruntime's default (verification, where speed matters more).
        providers: execution providers in priority order; each must be available here.
        batch: value for dynamic leading dimensions.
        seed: seed of the random inputs.
        name: label in errors and comparisons (default: the path).
    """

    def __init__(self, model: Any, threads: int | None = 1,
                 providers: tuple[str, ...] = ("CPUExecutionProvider",), batch: int = 1, seed: int = 0,
                 name: str | None = None) -> None:
        model = model if isinstance(model, bytes) else str(model)
        super().__init__(name or (model if isinstance(model, str) else "<onnx bytes>"))
        self.model, self.threads, self.providers, self.batch, self.seed = model, threads, tuple(providers), batch, seed
        self._sess = None
        self._feed: dict[str, np.ndarray] = {}

    @classmethod
    def from_settings(cls, artifact: str, settings: dict[str, Any],
                      input_shape: tuple[int, ...] | None = None) -> OrtRunner:
        providers = tuple(settings.get("providers") or ("CPUExecutionProvider",))
        threads = settings.get("threads", 1)  # None: onnxruntime's default (export verification)
        return cls(artifact, threads=None if threads is None else int(threads), providers=providers,
                   batch=int(settings.get("batch", 1)))

    def activate_impl(self) -> None:
        ort = _ort()
        missing = [p for p in self.providers if p not in ort.get_available_providers()]
        if missing:
            raise BackendUnavailable(
                f"onnxruntime {ort.__version__} here lacks {', '.join(missing)} "
                f"(available: {', '.join(ort.get_available_providers())})"
            )
        so = ort.SessionOptions()
        if self.threads is not None:
            so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        try:
            self._sess = ort.InferenceSession(self.model, so, providers=list(self.providers))
        except Exception as e:  # onnxruntime raises its own exception types for bad models
            raise RunnerError(f"onnxruntime cannot load {self.name}: {str(e).splitlines()[0]}") from None
        rng = np.random.default_rng(self.seed)
        self._feed = {}
        for inp in self._sess.get_inputs():
            if inp.type not in _DTYPES:
                raise RunnerError(f"{self.name}: input {inp.name} has unsupported type {inp.type}")
            shape = [d if isinstance(d, int) and d > 0 else self.batch for d in inp.shape]
            self._feed[inp.name] = rng.standard_normal(shape).astype(_DTYPES[inp.type])

    def run_impl(self) -> None:
        self._sess.run(None, self._feed)

    def infer_impl(self, x: Any) -> np.ndarray:
        (name, prepared), *_ = self._feed.items()  # the single image input, cast to the model's input type
        out = self._sess.run(None, {name: np.ascontiguousarray(x, dtype=prepared.dtype)})[0]
        return np.asarray(out, dtype=np.float32)

    def deactivate_impl(self) -> None:
        self._sess, self._feed = None, {}

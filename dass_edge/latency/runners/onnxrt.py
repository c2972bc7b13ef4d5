"""onnxruntime runner: CPU execution provider here; CUDA / TensorRT execution providers where installed."""

from __future__ import annotations

import importlib

import numpy as np

from .base import BackendUnavailable, LatencyRunner, RunnerError

__all__ = ["OrtRunner", "ort_version"]

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


class OrtRunner(LatencyRunner):
    """Times ``session.run`` on random inputs.

    Args:
        model: path to an ONNX file, or its bytes.
        threads: intra-op threads (inter-op is 1, execution sequential) so results are reproducible.
        providers: execution providers in priority order; each must be available here.
        batch: value for dynamic leading dimensions.
        seed: seed of the random inputs.
    """

    def __init__(self, model: str | bytes, threads: int = 1, providers: tuple[str, ...] = ("CPUExecutionProvider",),
                 batch: int = 1, seed: int = 0) -> None:
        super().__init__(model if isinstance(model, str) else "<onnx bytes>")
        self.model, self.threads, self.providers, self.batch, self.seed = model, threads, tuple(providers), batch, seed
        self._sess = None
        self._feed: dict[str, np.ndarray] = {}

    def activate_impl(self) -> None:
        ort = _ort()
        missing = [p for p in self.providers if p not in ort.get_available_providers()]
        if missing:
            raise BackendUnavailable(
                f"onnxruntime {ort.__version__} here lacks {', '.join(missing)} "
                f"(available: {', '.join(ort.get_available_providers())})"
            )
        so = ort.SessionOptions()
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

    def infer_impl(self) -> None:
        self._sess.run(None, self._feed)

    def deactivate_impl(self) -> None:
        self._sess, self._feed = None, {}

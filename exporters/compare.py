"""Comparator: run a reference and candidate runners on the same task images; parity and top-1.

Runners are the latency runners (:mod:`dass_edge.latency.runners`): the one that times an artifact
is the one that verifies it.

Parity is the largest absolute logit difference to the reference over all images; top-1 is
computed from the same outputs, so the two figures always describe the same run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dass_edge.latency.runners import LatencyRunner as Runner

__all__ = ["Comparator", "Comparison", "FP32_TOLERANCE", "fp16_tolerance"]

#: FP32 ONNX must match PyTorch within this max-abs logit difference.
FP32_TOLERANCE = 1e-4


def fp16_tolerance(reference_abs_max: float) -> float:
    """FP16 keeps ~3 significant digits; allow 1% of the logit scale (at least 0.01)."""
    return 1e-2 * max(1.0, float(reference_abs_max))


@dataclass(frozen=True)
class Comparison:
    """One runner's figures against the reference."""

    name: str
    max_abs: float  # largest |logit - reference logit|
    top1: float | None  # percent correct on the labelled images; None without labels
    agreement: float  # percent of images whose argmax matches the reference's
    abs_max: float  # largest |logit| of this runner (sets the FP16 tolerance scale)


def _outputs(runner: Runner, images: np.ndarray, batch_size: int) -> np.ndarray:
    with runner:
        return np.concatenate([runner.infer(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])


class Comparator:
    """Runs the reference once, then compares any number of runners to it on the same images.

    Args:
        reference: the runner whose outputs are the truth (PyTorch).
        images: float32 model inputs ``(N, C, H, W)``.
        labels: int labels for top-1, or None.
    """

    def __init__(self, reference: Runner, images: np.ndarray, labels: np.ndarray | None = None,
                 batch_size: int = 256) -> None:
        self.images, self.labels, self.batch_size = images, labels, batch_size
        self._ref = _outputs(reference, images, batch_size).astype(np.float64)
        self.reference = self._compare(reference.name, self._ref)

    def _compare(self, name: str, outputs: np.ndarray) -> Comparison:
        pred = outputs.argmax(1)
        labels = self.labels
        top1 = None if labels is None or len(labels) == 0 else round(float((pred == labels).mean() * 100), 2)
        return Comparison(name=name, max_abs=float(np.abs(outputs.astype(np.float64) - self._ref).max()), top1=top1,
                          agreement=round(float((pred == self._ref.argmax(1)).mean() * 100), 2),
                          abs_max=float(np.abs(outputs).max()))

    def check(self, runner: Runner) -> Comparison:
        """Run ``runner`` on the images and compare it to the reference."""
        return self._compare(runner.name, _outputs(runner, self.images, self.batch_size))

    @classmethod
    def run(cls, runners: Sequence[Runner], images: np.ndarray, labels: np.ndarray | None = None,
            batch_size: int = 256) -> list[Comparison]:
        """Compare every runner to ``runners[0]``; the first row is the reference itself (max_abs 0)."""
        comparator = cls(runners[0], images, labels, batch_size)
        return [comparator.reference, *(comparator.check(r) for r in runners[1:])]

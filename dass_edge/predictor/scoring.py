"""Scoring candidate students of one teacher on one task with the trained DaSS predictor.

Built once per search: the teacher's functional embedding, the probe batch, and the predictor's
weights adapted to this (dataset, teacher) pair by Meta-SGD on the teacher-guided support set (the
teacher labelled with its own validation accuracy). After that, each batch of candidates costs
their embeddings (prefix-cached, see :mod:`fast_embed`) and one batched forward pass.
"""

from __future__ import annotations

import abc
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from dass_edge.data.task import TaskData
from dass_edge.errors import DassEdgeError
from dass_edge.io import file_sha256
from dass_edge.models.resnet import ResNet
from dass_edge.predictor.embeddings import embed, probe_batch
from dass_edge.predictor.encoding import student_features
from dass_edge.predictor.fast_embed import StudentEmbedder
from dass_edge.predictor.hybrid import KSHOT_STRENGTH
from dass_edge.predictor.model import DaSSPredictor, adapt, predict, target_offset, trained_adapt_steps
from dass_edge.predictor.store import load_predictor
from dass_edge.predictor.support import SupportStudent
from dass_edge.predictor.training import calibrated
from dass_edge.space import Arch

__all__ = ["HybridScorer", "StudentScorer", "bounded_percent", "load_scorer", "teacher_accuracy"]


def teacher_accuracy(teacher: ResNet, meta: dict, data: TaskData) -> float:
    """The teacher's validation accuracy (percent): from its checkpoint when it was trained on this task,
    else measured now on ``data.val`` (the support label must describe this teacher on this data)."""
    from dass_edge.training.loop import evaluate

    same_task = meta.get("task") is not None and meta.get("task") == data.name
    if same_task and isinstance(meta.get("val_acc"), (int, float)):
        return float(meta["val_acc"])
    return float(evaluate(teacher, data.val, teacher.spec.mean, teacher.spec.std))


class _CalibratedScorer(abc.ABC):
    """What every predictor-file scorer shares: ``scorer(archs)`` times and counts each batch, turns the
    members' mean raw output (:meth:`_raw`) into accuracy with the file's calibration (anchored on the
    teacher's own raw score, ``_raw_teacher``) and keeps it inside (0, 100); ``info`` starts from the file's
    provenance (:meth:`_provenance`)."""

    calibration: dict | None
    teacher_acc: float
    _raw_teacher: float

    def _provenance(self, meta: dict, members: int) -> dict:
        return {"path": meta.get("path"), "sha256": file_sha256(meta["path"]) if meta.get("path") else None,
                "format": meta.get("format"), "members": members, "db": meta.get("db"),
                "heldout_metrics": meta.get("heldout", {}).get("mean", {}).get("dass"),
                "trained_at": meta.get("trained_at"), "teacher_val_acc": round(self.teacher_acc, 3),
                "calibration": meta.get("calibration")}

    @abc.abstractmethod
    def _raw(self, archs: Sequence[Arch]) -> torch.Tensor:
        """The members' mean raw output for ``archs`` (what the calibration maps to accuracy)."""

    def __call__(self, archs: Sequence[Arch]) -> np.ndarray:
        if not archs:
            return np.zeros(0)
        t0 = time.perf_counter()
        raw = self._raw(archs)
        self.seconds += time.perf_counter() - t0
        self.scored += len(archs)
        acc = calibrated(raw, self._raw_teacher, self.teacher_acc / 100.0, self.calibration)
        return bounded_percent(100.0 * acc.numpy().astype(np.float64))


class StudentScorer(_CalibratedScorer):
    """``scorer(archs) -> predicted top-1 accuracy after KD (percent)``, the ensemble's mean."""

    def __init__(self, models: list[DaSSPredictor], meta: dict, teacher: ResNet, teacher_acc: float,
                 embedder: StudentEmbedder) -> None:
        self.teacher_spec = teacher.spec
        self.embedder = embedder
        self.models = models
        self.teacher_acc = teacher_acc
        probe = embedder.probe
        with torch.no_grad():
            self._teacher_map = embed(teacher, probe)
        support = (self._teacher_map[None], torch.tensor([student_features(teacher_arch(teacher), teacher.spec)]),
                   self._teacher_map[None], torch.tensor([teacher_acc / 100.0]))
        steps = [trained_adapt_steps(m) for m in models]
        # Members trained on teacher-relative targets adapt to 0 (the teacher minus itself) and get the
        # teacher's accuracy added back.
        self._offsets = [target_offset(m, teacher_acc / 100.0) for m in models]
        self._params = [adapt(m, (*support[:3], support[3] - o), steps=s) if s else m.base_params()
                        for m, s, o in zip(models, steps, self._offsets)]
        self.calibration = meta.get("calibration")
        with torch.no_grad():  # the teacher's own arch, scored like a student: the calibration's anchor
            self._raw_teacher = float(torch.stack([predict(m, p, *support[:3])[0] + o
                                                   for m, p, o in zip(models, self._params, self._offsets)]).mean())
        self.info = {**self._provenance(meta, len(models)), "adapt_steps": steps[0], "inputs": list(models[0].use)}
        self.needs_student = any("student" in m.use for m in models)
        self.seconds = 0.0
        self.scored = 0

    def _raw(self, archs: Sequence[Arch]) -> torch.Tensor:
        with torch.no_grad():
            # A predictor trained without the student input (an ablation that can win) needs no embeddings.
            maps = self.embedder.embed(archs) if self.needs_student else None
            codes = torch.tensor([student_features(a, self.teacher_spec) for a in archs])
            teacher = self._teacher_map[None]  # encoded once, broadcast over the batch
            return torch.stack([predict(m, p, maps, codes, teacher) + o
                                for m, p, o in zip(self.models, self._params, self._offsets)]).mean(0)


class HybridScorer(_CalibratedScorer):
    """``scorer(archs) -> predicted top-1 accuracy after KD (percent)`` from hybrid members.

    Built once per search: the teacher's probe profile on this data (one forward pass of ~1,600 images and
    four ridge probes, :mod:`task_probe`), and the teacher's own score, the calibration's anchor. After
    that a batch of candidates costs their size and shape features and a dot product.
    """

    def __init__(self, models: list, meta: dict, teacher: ResNet, teacher_acc: float, data: TaskData,
                 support: Sequence[SupportStudent] = ()) -> None:
        from dass_edge.predictor.meta_tasks import unlabelled_task
        from dass_edge.predictor.task_probe import colour_probe_accuracy, stage_probe_accuracies

        self.teacher_spec, self.teacher_acc = teacher.spec, teacher_acc
        self.name = data.name
        self.profile = stage_probe_accuracies(teacher, data)
        self.colour = colour_probe_accuracy(data) if "colour" in models[0].descriptors else None
        self._task = lambda archs: unlabelled_task(self.name, list(archs), self.teacher_spec, self.profile,
                                                   self.colour)
        self.models = [self._adapted(m, support) for m in models] if support else models
        self._raw_teacher = float(np.mean([m.score(self._task([teacher_arch(teacher)]))[0] for m in self.models]))
        self.calibration = meta.get("calibration")
        self.needs_student = False
        self.info = {
            **self._provenance(meta, len(models)), "kind": "hybrid", "adapt_steps": 0,
            "inputs": ["shape", *(["probe"] if models[0].probe else []),
                       *([f"teacher:{d}" for d in models[0].descriptors])],
            # None: a split without images (the model then reads the profile as the average task's)
            "probe_profile": [round(a, 4) if math.isfinite(a) else None for a in self.profile],
            **({"colour_probe": round(self.colour, 4) if math.isfinite(self.colour) else None}
               if self.colour is not None else {}),
        }
        if support:
            self.info["support"] = {"students": len(support), "strength": KSHOT_STRENGTH,
                                    "runs": [{"arch_key": s.arch.key(), "val_acc": s.val_acc, "path": str(s.path)}
                                             for s in support]}
        self.seconds = 0.0
        self.scored = 0

    def _adapted(self, model, support: Sequence[SupportStudent]):
        """K-shot: ``model`` moved toward the user's distilled students (their validation accuracy)."""
        task = self._task([s.arch for s in support])
        task.labels = torch.tensor([s.val_acc / 100.0 for s in support], dtype=torch.float64)
        return model.adapted(task, range(len(support)), strength=KSHOT_STRENGTH)

    def _raw(self, archs: Sequence[Arch]) -> torch.Tensor:
        task = self._task(archs)
        return torch.as_tensor(np.mean([m.score(task) for m in self.models], axis=0), dtype=torch.float64)


def bounded_percent(x: np.ndarray) -> np.ndarray:
    """Keep predictions inside (0, 100) without changing their order.

    The regression head is unbounded, and for a near-perfect teacher adaptation can push scores past
    100 %. Values above 99 are compressed into (99, 100) and values below 1 into (0, 1), monotonically
    and continuously, so the ranking search relies on is untouched.
    """
    x = np.asarray(x, dtype=np.float64)
    over = np.maximum(x, 99.0) - 99.0
    high = 99.0 + over / (1.0 + over)
    low = 1.0 / (2.0 - np.minimum(x, 1.0))
    return np.where(x > 99.0, high, np.where(x < 1.0, low, x))


def teacher_arch(teacher: ResNet) -> Arch:
    from dass_edge.space import SearchSpace

    return SearchSpace(teacher.spec, fixed_last_stage=False).teacher_arch()


def load_scorer(teacher: ResNet, data: TaskData, predictor: str | Path | None = None,
                teacher_meta: dict | None = None, progress: Callable[[str], None] | None = None,
                support: Sequence[SupportStudent] = ()) -> StudentScorer | HybridScorer:
    """A scorer for ``teacher``'s students on ``data``, using the shipped predictor unless one is given.

    ``support``: students of this task already distilled (:func:`dass_edge.predictor.support.read_support`,
    checked by the caller), which the hybrid predictor adapts to (K-shot).

    Raises:
        DassEdgeError: missing/foreign predictor file, a teacher/data mismatch, or support students given to
            a predictor that cannot adapt to them (the DaSS network).
    """
    if teacher.spec.num_classes != data.num_classes:
        raise DassEdgeError(f"the teacher has {teacher.spec.num_classes} classes but the data has "
                            f"{data.num_classes}; use a teacher trained on this task")
    if teacher.spec.resolution != data.resolution:
        raise DassEdgeError(f"the teacher expects {teacher.spec.resolution} px but the data is at {data.resolution} px")
    models, meta = load_predictor(predictor)
    if progress:
        progress("adapting the predictor to this teacher")
    acc = teacher_accuracy(teacher, teacher_meta or {}, data)
    if meta["model"].get("kind") == "hybrid":
        return HybridScorer(models, meta, teacher.eval(), acc, data, support)
    if support:
        raise DassEdgeError("--support adapts the hybrid predictor (the shipped one); this predictor file is a DaSS "
                            "network, which adapts to the teacher only")
    probe = probe_batch(data.train, teacher.spec.mean, teacher.spec.std)
    return StudentScorer(models, meta, teacher.eval(), acc, StudentEmbedder(teacher, probe))

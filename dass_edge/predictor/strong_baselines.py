"""Two stronger baselines any distillation-aware predictor must beat: ``ridge`` and ``diswot``.

* ``ridge`` — a linear model on teacher-relative size and shape features (:func:`ridge_features`),
  fitted in closed form on the meta-training tasks' labels standardized per task (only the order
  inside a task matters). Size alone explains most of a task's accuracy; its shape features (depth
  and width per stage) are what a budgeted search needs on top.
* ``diswot`` — DisWOT (Dong, Li, Wei, CVPR 2023): a training-free score of how similar a student is
  to its teacher on one batch (:func:`diswot_distances`), built from the paper's two metrics:

  - *relation*: the batch Gram matrix ``A A^T`` of the pre-pooling features (``A``: ``B x CHW``),
    rows L2-normalized, for teacher and student; distance = Frobenius norm of their difference;
  - *semantic*: per image, the Grad-CAM map of every class (``ReLU(sum_k alpha_k^c A_k)`` with
    ``alpha_k^c`` the spatial mean of ``d logit_c / d A_k``), the class-by-class similarity
    ``M M^T`` of those maps, rows L2-normalized; distance = Frobenius norm of the teacher-student
    difference, averaged over the batch.

  The score is ``-(relation + semantic)``: more similar to the teacher ranks higher. The paper scores
  randomly initialized networks; here, as for every proxy in this package, the student is remapped
  from the trained teacher (``remap(..., "first")``), which is what ``search`` would train.

Both register in :data:`dass_edge.predictor.baselines.BASELINES` like the others.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from dass_edge.errors import DassEdgeError
from dass_edge.models.remap import remap
from dass_edge.models.resnet import ResNet
from dass_edge.predictor.baselines import Baseline, TaskContext, register_baseline
from dass_edge.predictor.meta_tasks import MetaTask
from dass_edge.space import spec_flops, spec_params

__all__ = ["DisWOTBaseline", "RidgeBaseline", "diswot_distances", "ridge_features"]


# --- ridge ----------------------------------------------------------------------------------------------------
def ridge_features(task: MetaTask) -> np.ndarray:
    """``(N, 11)`` features of ``task``'s students relative to its teacher.

    log(FLOPs / teacher's), its square, log(params / teacher's), the depth of each of the 4 stages, and the
    mean width of each stage over the teacher's width of that stage.
    """
    if task.spec is None:
        raise DassEdgeError(f"task {task.name} carries no teacher spec; build it with load_meta_tasks()")
    tf, tp = spec_flops(task.spec), spec_params(task.spec)
    lf = np.log(np.asarray(task.flops, dtype=float) / tf)
    lp = np.log(np.asarray(task.params, dtype=float) / tp)
    depth = np.array([list(a.depths) for a in task.archs], dtype=float)
    width = np.array([[sum(w) / len(w) / tw for w, tw in zip(a.widths, task.spec.widths)] for a in task.archs])
    return np.column_stack([lf, lf**2, lp, depth, width])


class RidgeBaseline(Baseline):
    """Ridge regression of per-task standardized accuracy on :func:`ridge_features`.

    Args:
        alpha: L2 penalty on the standardized features' weights (default 1.0).
    """

    trainable = True

    def __init__(self, alpha: float = 1.0) -> None:
        self.alpha = alpha
        self.mean: np.ndarray | None = None
        self.scale: np.ndarray | None = None
        self.coef: np.ndarray | None = None

    def fit(self, train_tasks: Sequence[MetaTask], contexts: Mapping[str, TaskContext] | None = None) -> Baseline:
        tasks = [t for t in train_tasks if len(t) >= 2]
        if not tasks:
            raise DassEdgeError("baseline ridge needs at least one meta-training task with 2 or more students")
        x = np.concatenate([ridge_features(t) for t in tasks])
        y = np.concatenate([_standardized(t.labels.numpy().astype(float)) for t in tasks])
        self.mean, self.scale = x.mean(0), np.where(x.std(0) > 1e-9, x.std(0), 1.0)
        z = (x - self.mean) / self.scale
        self.coef = np.linalg.solve(z.T @ z + self.alpha * np.eye(z.shape[1]), z.T @ (y - y.mean()))
        return self

    def score(self, task: MetaTask, context: TaskContext | None = None) -> np.ndarray:
        if self.coef is None or self.mean is None or self.scale is None:
            raise DassEdgeError("baseline ridge is not fitted; call fit(train_tasks) first")
        return ((ridge_features(task) - self.mean) / self.scale) @ self.coef


def _standardized(y: np.ndarray) -> np.ndarray:
    sd = y.std()
    return (y - y.mean()) / sd if sd > 1e-12 else y - y.mean()


# --- DisWOT ---------------------------------------------------------------------------------------------------
def _relation(feats: torch.Tensor) -> torch.Tensor:
    """Row-normalized batch Gram matrix of ``(B, C, H, W)`` features: ``(B, B)``."""
    a = feats.flatten(1)
    return F.normalize(a @ a.T, dim=1)


def _grad_cam(model: ResNet, feats: torch.Tensor) -> torch.Tensor:
    """Grad-CAM maps of every class for every image: ``(B, K, H*W)``.

    alpha[b, c, k] = spatial mean of d logit[b, c] / d feats[b, k]; map = ReLU(sum_k alpha * feats[b, k]).
    Images are independent in eval mode, so the batch sum of a class's logits gives every image's gradient.
    """
    a = feats.detach().requires_grad_(True)
    logits = model.forward_head(a)
    alphas = []
    for c in range(logits.shape[1]):
        (g,) = torch.autograd.grad(logits[:, c].sum(), a, retain_graph=c + 1 < logits.shape[1])
        alphas.append(g.mean(dim=(2, 3)))  # (B, C)
    alpha = torch.stack(alphas, dim=1)  # (B, K, C)
    return torch.relu(torch.einsum("bkc,bcn->bkn", alpha, a.detach().flatten(2)))


def _semantic(model: ResNet, feats: torch.Tensor) -> torch.Tensor:
    """Row-normalized class-by-class similarity of each image's Grad-CAM maps: ``(B, K, K)``."""
    cam = _grad_cam(model, feats)
    return F.normalize(cam @ cam.transpose(1, 2), dim=2)


def diswot_distances(teacher: ResNet, student: ResNet, x: torch.Tensor) -> tuple[float, float]:
    """``(relation, semantic)`` distances of ``student`` from ``teacher`` on batch ``x`` (both eval mode)."""
    teacher.eval()
    student.eval()
    with torch.no_grad():
        ft, fs = teacher.forward_features(x), student.forward_features(x)
    relation = torch.linalg.norm(_relation(ft) - _relation(fs))
    semantic = torch.linalg.norm(_semantic(teacher, ft) - _semantic(student, fs), dim=(1, 2)).mean()
    return float(relation), float(semantic)


class DisWOTBaseline(Baseline):
    """DisWOT's training-free score, ``-(relation + semantic)`` distance to the teacher (higher = better)."""

    needs_context = True

    def __init__(self, remap_mode: str = "first") -> None:
        self.remap_mode = remap_mode

    def score(self, task: MetaTask, context: TaskContext | None = None) -> np.ndarray:
        if context is None or context.teacher is None:
            raise DassEdgeError("baseline diswot needs a task context with the teacher (task_context())")
        x = context.x
        out = []
        for arch in task.archs:
            r, s = diswot_distances(context.teacher, remap(context.teacher, arch, self.remap_mode), x)
            out.append(-(r + s) if math.isfinite(r + s) else -math.inf)
        return np.asarray(out, dtype=float)


@register_baseline
def ridge(**kwargs) -> Baseline:
    """Ridge regression on teacher-relative size and shape features (standardized per task)."""
    return RidgeBaseline(**kwargs)


@register_baseline
def diswot(**kwargs) -> Baseline:
    """DisWOT (CVPR 2023): relation + semantic similarity of the remapped student to the teacher."""
    return DisWOTBaseline(**kwargs)

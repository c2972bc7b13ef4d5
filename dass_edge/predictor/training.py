"""Meta-training the DaSS predictor on the meta-database, and predicting with it.

Each meta-training step samples a few meta-training tasks (a dataset with its teacher). For each,
the predictor first adapts to the task with Meta-SGD on the teacher-guided support set (the teacher
as a student of itself, labelled with its own accuracy — free at search time), then is scored on
the task's KD-trained students with the adapted weights; the outer loss updates both the weights
and the per-parameter inner learning rates. The loss is a mean-squared error on accuracy plus a
pairwise logistic ranking term: search only needs the order of students within a task, and the
ranking term keeps the predictor from spending its capacity on each task's absolute level.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from dass_edge.predictor.meta_tasks import MetaTask, teacher_task
from dass_edge.predictor.model import DaSSPredictor, adapt, predict, target_offset, trained_adapt_steps

__all__ = ["TrainConfig", "meta_train", "predict_task", "task_support", "pairwise_rank_loss", "fit_calibration",
           "calibrated", "adapted_predictions", "is_hybrid"]

ProgressFn = Callable[[int, int, float], None]


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a meta-training run (stored with the shipped predictor)."""

    steps: int = 600
    tasks_per_step: int = 4
    lr: float = 2e-3
    weight_decay: float = 1e-4
    hidden: int = 64
    # The student embedding (S) is off: on this database it lowered cross-validated Spearman (0.806 with it,
    # 0.851 without; BENCHMARKS.md), and without it search needs no per-student forward pass.
    use: tuple[str, ...] = ("arch", "teacher")
    adapt: bool = True  # teacher-guided Meta-SGD adaptation on (off: plain multi-task regression)
    inner_steps: int = 1
    rank_weight: float = 3.0  # chosen by 2-fold cross-validation over meta-training tasks (see BENCHMARKS.md)
    rank_scale: float = 20.0  # logits of the pairwise loss: accuracy differences (fractions) times this
    # "relative": regress accuracy minus the teacher's (the support label is then 0, and adaptation cannot
    # be spent on a task's level); "absolute": accuracy itself.
    target: str = "absolute"
    adapt_scope: str = "all"  # "head": the inner loop moves only the head's weights
    seed: int = 0
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["use"] = list(self.use)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        d = dict(d)
        d["use"] = tuple(d.get("use", cls.use))
        return cls(**d)


def task_support(task: MetaTask, k_shot: int = 0, seed: int = 0
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The adaptation set: the teacher with its own accuracy, plus ``k_shot`` KD-trained students."""
    s, a, t, y = task.support()
    if k_shot <= 0:
        return s, a, t, y
    idx = torch.randperm(len(task), generator=torch.Generator().manual_seed(seed))[:k_shot]
    teach = task.teacher_embedding[None].expand(len(idx), *task.teacher_embedding.shape)
    return (torch.cat([s, task.student_embeddings[idx]]), torch.cat([a, task.codes[idx]]), torch.cat([t, teach]),
            torch.cat([y, task.labels[idx]]))


def pairwise_rank_loss(pred: torch.Tensor, target: torch.Tensor, scale: float = 20.0, margin: float = 0.002
                       ) -> torch.Tensor:
    """Logistic loss over all pairs whose true accuracies differ by more than ``margin`` (label noise)."""
    dp = pred[:, None] - pred[None, :]
    dt = target[:, None] - target[None, :]
    mask = dt > margin
    if not bool(mask.any()):
        return pred.sum() * 0.0
    return torch.nn.functional.softplus(-scale * dp[mask]).mean()


def _teacher_maps(task: MetaTask, n: int) -> torch.Tensor:
    return task.teacher_embedding[None].expand(n, *task.teacher_embedding.shape)


def _relative_support(model: DaSSPredictor, task: MetaTask, k_shot: int = 0, seed: int = 0
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`task_support` with labels in the model's target unit."""
    s, a, t, y = task_support(task, k_shot, seed)
    return s, a, t, y - target_offset(model, task.teacher_acc)


def _episode_loss(model: DaSSPredictor, task: MetaTask, cfg: TrainConfig, idx: torch.Tensor) -> torch.Tensor:
    params = adapt(model, _relative_support(model, task), steps=cfg.inner_steps, create_graph=True) \
        if cfg.adapt else model.base_params()
    pred = predict(model, params, task.student_embeddings[idx], task.codes[idx], _teacher_maps(task, len(idx)))
    y = task.labels[idx] - target_offset(model, task.teacher_acc)
    loss = torch.mean((pred - y) ** 2)
    if cfg.rank_weight > 0:
        loss = loss + cfg.rank_weight * pairwise_rank_loss(pred, y, cfg.rank_scale)
    return loss


def meta_train(tasks: list[MetaTask], cfg: TrainConfig, progress: ProgressFn | None = None
               ) -> tuple[DaSSPredictor, list[float]]:
    """Meta-train a predictor on ``tasks`` (which must not include held-out tasks). Deterministic in ``cfg.seed``."""
    if not tasks:
        raise ValueError("meta-training needs at least one task")
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    first = tasks[0]
    # Channels of the functional embedding: the teacher's (students share them, and may not be embedded at all
    # when the model does not read them).
    model = DaSSPredictor(first.teacher_embedding.shape[1], first.codes.shape[1], hidden=cfg.hidden, use=cfg.use)
    model.config.update({"adapt": cfg.adapt, "inner_steps": cfg.inner_steps, "target": cfg.target,
                         "adapt_scope": cfg.adapt_scope})
    # Start the head at the mean label so early steps learn structure, not the offset.
    with torch.no_grad():
        model.head[-1].bias.fill_(float(torch.cat([t.labels - target_offset(model, t.teacher_acc)
                                                   for t in tasks]).mean()))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps)
    history: list[float] = []
    for step in range(cfg.steps):
        batch = rng.sample(tasks, min(cfg.tasks_per_step, len(tasks)))
        loss = sum(_episode_loss(model, t, cfg, torch.arange(len(t))) for t in batch) / len(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        history.append(float(loss.detach()))
        if progress and (step + 1) % 25 == 0:
            progress(step + 1, cfg.steps, sum(history[-25:]) / 25)
    model.eval()
    return model, history


def _adapted(model: DaSSPredictor, task: MetaTask, adapt_steps: int | None = None, k_shot: int = 0,
             k_seed: int = 0) -> dict[str, torch.Tensor]:
    """The model's weights adapted to ``task`` (``adapt_steps`` None: the trained setting)."""
    steps = trained_adapt_steps(model) if adapt_steps is None else adapt_steps
    return adapt(model, _relative_support(model, task, k_shot, k_seed), steps=steps) if steps else \
        model.base_params()


def is_hybrid(model: object) -> bool:
    """Whether ``model`` is a :class:`HybridPredictor` member (closed form, no adaptation) or a DaSS network."""
    from dass_edge.predictor.hybrid import HybridPredictor

    return isinstance(model, HybridPredictor)


def predict_task(model: DaSSPredictor, task: MetaTask, adapt_steps: int | None = None, k_shot: int = 0,
                 k_seed: int = 0) -> torch.Tensor:
    """Predicted accuracies (fractions) of ``task``'s students, after teacher-guided adaptation.

    ``adapt_steps`` None uses the model's trained setting (``model.config['inner_steps']`` when adaptation
    was on, else 0). A hybrid member's raw scores (standardized accuracy) are returned as they are; it does
    not adapt to the teacher, and with ``k_shot`` it adapts to K of the task's students
    (:meth:`HybridPredictor.adapted`).
    """
    if is_hybrid(model):
        if k_shot > 0:  # the same K students task_support would draw
            idx = torch.randperm(len(task), generator=torch.Generator().manual_seed(k_seed))[:k_shot]
            model = model.adapted(task, idx.tolist())
        return torch.as_tensor(model.score(task), dtype=torch.float64)
    params = _adapted(model, task, adapt_steps, k_shot, k_seed)
    with torch.no_grad():
        raw = predict(model, params, task.student_embeddings, task.codes, _teacher_maps(task, len(task))).detach()
    return raw + target_offset(model, task.teacher_acc)


def adapted_predictions(models: list[DaSSPredictor], task: MetaTask) -> tuple[torch.Tensor, float]:
    """Ensemble-mean raw predictions (trained adaptation) for the task's students and for the teacher's own
    arch, the anchor of :func:`calibrated`."""
    students, teacher = [], []
    t_map = task.teacher_embedding[None]
    if models and is_hybrid(models[0]):
        anchor = teacher_task(task)
        scores = torch.stack([torch.as_tensor(m.score(task), dtype=torch.float64) for m in models]).mean(0)
        return scores, float(np.mean([m.score(anchor)[0] for m in models]))
    for m in models:
        params = _adapted(m, task)
        off = target_offset(m, task.teacher_acc)
        with torch.no_grad():
            students.append(predict(m, params, task.student_embeddings, task.codes, t_map) + off)
            teacher.append(predict(m, params, t_map, task.teacher_code[None], t_map)[0] + off)
    return torch.stack(students).mean(0), float(torch.stack(teacher).mean())


def fit_calibration(models: list[DaSSPredictor], tasks: list[MetaTask]) -> dict:
    """A linear map from the predictor's raw output to accuracy, anchored on the teacher.

    The ranking loss lets raw outputs spread far beyond [0, 1] (only their order is trained hard), so
    the accuracy shown to users is ``teacher_acc + intercept + slope * (raw - raw_teacher)``: the gap to
    the teacher's known accuracy, scaled by a slope fitted by least squares on meta-training tasks only.
    Monotone (slope > 0), so rankings are unchanged.
    """
    xs, ys = [], []
    for task in tasks:
        raw, raw_teacher = adapted_predictions(models, task)
        xs.append(raw - raw_teacher)
        ys.append(task.labels - task.teacher_acc)
    x, y = torch.cat(xs).double(), torch.cat(ys).double()
    design = torch.stack([x, torch.ones_like(x)], 1)
    slope, intercept = torch.linalg.lstsq(design, y[:, None]).solution[:, 0].tolist()
    if slope <= 0:
        slope, intercept = 1.0, 0.0  # an anti-correlated fit would reorder students: fall back to raw gaps
    return {"slope": round(slope, 6), "intercept": round(intercept, 6), "fitted_on": [t.name for t in tasks]}


def calibrated(raw: torch.Tensor, raw_teacher: float, teacher_acc: float, calibration: dict | None) -> torch.Tensor:
    """Accuracy (fraction) from raw outputs; without a calibration, the raw outputs themselves."""
    if not calibration:
        return raw
    return teacher_acc + calibration["intercept"] + calibration["slope"] * (raw - raw_teacher)


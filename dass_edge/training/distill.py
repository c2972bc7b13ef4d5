"""Knowledge distillation: a student remapped from its teacher, trained against the teacher's logits.

Split the way torchdistill splits it: losses are registered by key (:mod:`dass_edge.training.losses`), a
:class:`KDBox` owns the teacher, the teacher-output source (cache or live forward) and the loss, and
the shared training loop (:func:`dass_edge.training.loop.train`) only calls the box's ``loss_fn``. So KD
inherits the loop's seeded stream, best-on-val selection and per-epoch resume.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

from dass_edge.data.task import TaskData
from dass_edge.errors import DassEdgeError
from dass_edge.models.remap import REMAP_MODES, remap
from dass_edge.models.resnet import ResNet
from dass_edge.space import Arch, SearchSpace
from dass_edge.training.loop import EpochMetrics, ProgressFn, Recipe, StepHook, evaluate, train
from dass_edge.training.losses import KDLoss, get_loss, loss_needs_teacher
from dass_edge.training.teacher_cache import TeacherCache, load_or_build_cache
from dass_edge.validate import finite

__all__ = ["KDConfig", "KDBox", "DistillResult", "check_compatible", "distill", "DB_RECIPE"]

#: The meta-database label recipe (see benchmarks/results/distill.md): a short, low-lr schedule that
#: is stable after remapping, so two seeds rank students alike.
DB_RECIPE = Recipe(epochs=10, batch_size=128, lr=0.01, momentum=0.9, weight_decay=3e-5, warmup_epochs=1.0,
                   label_smoothing=0.0, augment=True, seed=0)


@dataclass(frozen=True)
class KDConfig:
    """A KD run's settings besides the student: loss by key, remap mode and the optimization recipe."""

    recipe: Recipe = field(default_factory=lambda: DB_RECIPE)
    loss: str = "kd"
    alpha: float = 0.5
    temperature: float = 6.0
    remap: str = "first"

    def validate(self) -> KDConfig:
        self.recipe.validate()
        finite(self.alpha, "alpha")
        finite(self.temperature, "temperature")  # checked even for losses that ignore them: they are recorded
        get_loss(self.loss, alpha=self.alpha, temperature=self.temperature)
        if self.remap not in REMAP_MODES:
            raise DassEdgeError(f"unknown remap mode {self.remap!r}; choose one of {', '.join(REMAP_MODES)}")
        return self

    def to_dict(self) -> dict:
        return {"recipe": asdict(self.recipe), "loss": self.loss, "alpha": self.alpha,
                "temperature": self.temperature, "remap": self.remap}

    @classmethod
    def from_dict(cls, d: dict) -> KDConfig:
        return cls(recipe=Recipe(**d["recipe"]), loss=d["loss"], alpha=d["alpha"], temperature=d["temperature"],
                   remap=d["remap"])

    def with_seed(self, seed: int) -> KDConfig:
        return replace(self, recipe=replace(self.recipe, seed=seed))

    def recipe_hash(self) -> str:
        """Identifies the recipe apart from the seed (the seed is its own field in a DB row)."""
        d = self.to_dict()
        d["recipe"] = {k: v for k, v in d["recipe"].items() if k != "seed"}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


class KDBox:
    """Owns the teacher, where its logits come from, and the loss; hands the loop a ``loss_fn``.

    Args:
        teacher: the teacher (kept in eval mode; never updated).
        loss: a registered loss.
        cache: teacher logits for this run's stream; batches it does not hold run the teacher live.
    """

    def __init__(self, teacher: nn.Module, loss: KDLoss, cache: TeacherCache | None = None,
                 needs_teacher: bool = True) -> None:
        self.teacher = teacher.eval()
        self.loss = loss
        self.cache = cache
        self.needs_teacher = needs_teacher
        self.hits = 0
        self.misses = 0

    @torch.no_grad()
    def teacher_logits(self, x: torch.Tensor, index: torch.Tensor, epoch: int) -> torch.Tensor:
        if self.cache is not None:
            found = self.cache.lookup(x, index, epoch)
            if found is not None:
                self.hits += 1
                return found
        self.misses += 1
        return self.teacher(x)

    def loss_fn(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor,
                epoch: int) -> torch.Tensor:
        t = self.teacher_logits(x, index, epoch) if self.needs_teacher else None
        return self.loss(model(x), t, y)


@dataclass
class DistillResult:
    student: ResNet  # best-on-validation weights, eval mode
    val_acc: float
    final_val_acc: float
    test_acc: float
    best_epoch: int
    history: list[dict]
    seconds: float
    images_per_second: float
    cache: dict  # {"used", "hit", "hits", "misses"}


def check_compatible(teacher: ResNet, data: TaskData, arch: Arch, fixed_last_stage: bool = False) -> SearchSpace:
    """Raise a one-line error unless ``arch`` can be remapped from ``teacher`` and trained on ``data``."""
    if teacher.spec.num_classes != data.num_classes:
        raise DassEdgeError(f"the teacher has {teacher.spec.num_classes} classes but task {data.name} has "
                            f"{data.num_classes}; use a teacher trained on this task")
    if teacher.spec.resolution != data.resolution:
        raise DassEdgeError(f"the teacher was trained at {teacher.spec.resolution} px but the data is at "
                            f"{data.resolution} px")
    try:
        space = SearchSpace(teacher.spec, fixed_last_stage=fixed_last_stage)
    except DassEdgeError as e:
        raise DassEdgeError(f"this teacher cannot host students: {e}") from None
    try:
        space.validate(arch)
    except DassEdgeError as e:
        raise DassEdgeError(f"arch {arch.key()} does not fit the teacher: {e}") from None
    return space


def distill(teacher: ResNet, arch: Arch, data: TaskData, config: KDConfig, *, teacher_sha256: str | None = None,
            cache_dir: str | Path | None = None, resume_path: str | Path | None = None,
            progress: ProgressFn | None = None, device: str | torch.device = "cpu",
            stop_after: int | None = None, after_step: StepHook | None = None,
            epoch_metrics: EpochMetrics | None = None) -> DistillResult:
    """KD-train ``arch`` remapped from ``teacher`` on ``data``; select the best epoch on validation.

    Args:
        teacher_sha256: the teacher file's checksum; with ``cache_dir`` it keys the teacher-output cache.
        cache_dir: where teacher-output caches live (None: run the teacher live on every batch).
        resume_path: per-epoch resume state (see :func:`dass_edge.training.loop.train`).
        device: where student and teacher run (the student comes back on the CPU).
        stop_after: stop after this epoch of the recipe (schedule unchanged; see :func:`train`).
        after_step, epoch_metrics: observers of the run (see :func:`train`).

    Raises:
        DassEdgeError: class-count or resolution mismatch, arch outside the teacher's space, bad config.
    """
    config.validate()
    check_compatible(teacher, data, arch)
    recipe = config.recipe
    mean, std = teacher.spec.mean, teacher.spec.std
    teacher = teacher.eval()
    student = remap(teacher, arch, mode=config.remap)
    device = torch.device(device)
    if device.type != "cpu":
        teacher = copy.deepcopy(teacher).to(device)  # the caller's teacher stays where it is
    needs_teacher = loss_needs_teacher(config.loss)
    cache, hit = None, False
    if needs_teacher and cache_dir is not None and teacher_sha256:
        cache, hit = load_or_build_cache(teacher, teacher_sha256, data, cache_dir, seed=recipe.seed,
                                         batch_size=recipe.batch_size, epochs=stop_after or recipe.epochs,
                                         augment=recipe.augment,
                                         mean=mean, std=std)
    box = KDBox(teacher, get_loss(config.loss, alpha=config.alpha, temperature=config.temperature), cache,
                needs_teacher=needs_teacher)
    extra = {"kd": config.to_dict(), "teacher": teacher_sha256 or "", "arch": arch.key()}
    result = train(student, data, recipe, mean=mean, std=std, loss_fn=box.loss_fn, resume_path=resume_path,
                   progress=progress, fingerprint_extra=extra, device=device,
                   stop_after=stop_after, after_step=after_step, epoch_metrics=epoch_metrics)
    test_acc = evaluate(result.model, data.test, mean, std)
    return DistillResult(student=result.model, val_acc=result.best_val_acc, final_val_acc=result.final_val_acc,
                         test_acc=test_acc, best_epoch=result.best_epoch, history=result.history,
                         seconds=result.seconds, images_per_second=result.images_per_second,
                         cache={"used": cache is not None, "hit": hit, "hits": box.hits,
                                "misses": box.misses if needs_teacher else 0})

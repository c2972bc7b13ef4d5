"""Baselines for the DaSS predictor, registered by key, and the seed-to-seed ceiling.

Every baseline has one contract, so ``meta eval`` runs a list of keys side by side with DaSS:

* ``fit(train_tasks, contexts=None) -> self`` — learn from the meta-training tasks (a no-op for the
  training-free ones);
* ``score(task, context) -> np.ndarray`` — one score per student of ``task``, in ``task.archs`` order,
  higher = predicted more accurate.

``context`` is a :class:`TaskContext` (the teacher and one fixed, seeded batch of the task's training
images), built by :func:`task_context` from meta-database rows. Training-free baselines that only read
the :class:`MetaTask` (``params``, ``flops``) accept ``None``.

Baselines (DESIGN.md section 5):

* ``params``, ``flops`` — model size; bigger = better.
* ``synflow``, ``snip``, ``grad_norm``, ``jacov`` — zero-cost proxies (:mod:`dass_edge.predictor.proxies`)
  of each student remapped from the teacher ("first"), on the context batch, seeded.
* ``arch_only`` — an MLP on the teacher-relative arch code only, trained with MSE on per-task standardized
  labels (only the order inside a task matters, and tasks differ in their mean accuracy).
* ``ridge``, ``diswot`` — in :mod:`dass_edge.predictor.strong_baselines` (registered on import of this module).
* ``metad2a`` — MetaD2A-style (Lee et al., ICLR 2021): a set encoder of the task's *images* (fixed random
  CNN features, pooled within each class, then across classes, through learned MLPs) joined with the arch
  code and regressed onto accuracy. It sees no teacher or student function: what sets DaSS apart.

:func:`seed_ceiling` is not a predictor: it scores seed 1's labels as a prediction of seed 0's, the
ceiling that label noise puts on any predictor.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dass_edge.data import Split, load_task, normalize
from dass_edge.errors import DassEdgeError
from dass_edge.io import file_sha256
from dass_edge.models.checkpoint import load_checkpoint
from dass_edge.models.remap import remap
from dass_edge.models.resnet import ResNet
from dass_edge.predictor.meta_tasks import MetaTask
from dass_edge.predictor.metrics import rank_metrics
from dass_edge.predictor.proxies import PROXIES, score_proxy

__all__ = [
    "BASELINES", "CONTEXT_BATCH", "MIN_CEILING_STUDENTS", "ArchOnlyBaseline", "Baseline", "MetaD2ABaseline",
    "ProxyBaseline", "TaskAttributeBaseline", "TaskContext", "context_from_split", "create_baseline", "is_baseline",
    "list_baselines", "register_baseline", "seed_ceiling", "task_context",
]

#: Images in a context batch (proxies and the MetaD2A set encoder both use it).
CONTEXT_BATCH = 64
#: Fewer students trained with both seeds than this, and the ceiling is NaN (too noisy to mean anything).
MIN_CEILING_STUDENTS = 5


# --- task context ---------------------------------------------------------------------------------------------
@dataclass
class TaskContext:
    """What a baseline may look at besides the :class:`MetaTask`: the teacher and one fixed batch of images.

    ``images`` are raw uint8 ``(B, C, H, W)`` training images and ``targets`` their class labels; ``x`` is the
    batch normalized with the teacher's mean/std, as the teacher and its students expect.
    """

    name: str
    images: torch.Tensor
    targets: torch.Tensor
    teacher: ResNet | None = None
    seed: int = 0

    @property
    def x(self) -> torch.Tensor:
        if self.teacher is None:
            raise DassEdgeError(f"the context of task {self.name} has no teacher; build it with task_context()")
        return normalize(self.images, self.teacher.spec.mean, self.teacher.spec.std)


def context_from_split(name: str, split: Split, teacher: ResNet | None = None, batch_size: int = CONTEXT_BATCH,
                       seed: int = 0) -> TaskContext:
    """A context holding ``batch_size`` images of ``split`` picked by ``seed`` (the same ones on every call)."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(split), generator=g)[:batch_size]
    return TaskContext(name=name, images=split.images[idx], targets=split.labels[idx], teacher=teacher, seed=seed)


def task_context(task_name: str, rows: Sequence[dict], teachers_dir: str | Path, batch_size: int = CONTEXT_BATCH,
                 seed: int = 0, verify_checksums: bool = True) -> TaskContext:
    """Build the context of ``task_name`` from its meta-database rows: its teacher and a seeded training batch.

    Raises:
        DassEdgeError: no row has that task, or its teacher file is missing or not the one the rows name.
    """
    mine = [r for r in rows if r["task"] == task_name]
    if not mine:
        raise DassEdgeError(f"no meta-database row has task {task_name!r}")
    first = mine[0]
    path = Path(teachers_dir) / first["teacher_file"]
    if not path.is_file():
        raise DassEdgeError(f"teacher {path} of task {task_name} is missing; restore metadb/teachers or rebuild it")
    if verify_checksums and file_sha256(path) != first["teacher_sha256"]:
        raise DassEdgeError(f"teacher {path} is not the one task {task_name}'s rows were trained with (checksum)")
    teacher, _ = load_checkpoint(path)
    data = load_task(task_name, resolution=first["resolution"])
    return context_from_split(task_name, data.train, teacher.eval(), batch_size, seed)


# --- registry (timm-style) ------------------------------------------------------------------------------------
class Baseline(abc.ABC):
    """A predictor to compare DaSS with: ``fit`` on meta-training tasks, then ``score`` students of a task."""

    #: The registry key (set by the factory).
    name: str = "baseline"
    #: Whether ``fit`` learns anything (``False``: ``fit`` is a no-op and ``score`` works right away).
    trainable: ClassVar[bool] = False
    #: Whether ``score`` reads a :class:`TaskContext` (teacher, images); ``False``: it may be ``None``.
    needs_context: ClassVar[bool] = False

    def fit(self, train_tasks: Sequence[MetaTask], contexts: Mapping[str, TaskContext] | None = None) -> Baseline:
        """Learn from ``train_tasks`` (``contexts``: by task name, for baselines that read images); returns self."""
        return self

    @abc.abstractmethod
    def score(self, task: MetaTask, context: TaskContext | None = None) -> np.ndarray:
        """One float per student of ``task`` (``task.archs`` order); higher = predicted more accurate."""


BaselineFactory = Callable[..., Baseline]
BASELINES: dict[str, BaselineFactory] = {}


def register_baseline(fn: BaselineFactory) -> BaselineFactory:
    """Register a factory returning a :class:`Baseline` under its own name.

    Raises:
        ValueError: the name is already taken.
    """
    if fn.__name__ in BASELINES:
        raise ValueError(f"baseline {fn.__name__!r} registered twice")
    BASELINES[fn.__name__] = fn
    return fn


def list_baselines() -> list[str]:
    """Registered baseline keys, in registration order (cheap ones first)."""
    return list(BASELINES)


def is_baseline(name: str) -> bool:
    return name in BASELINES


def create_baseline(name: str, **kwargs) -> Baseline:
    """Build a registered baseline, e.g. ``create_baseline("arch_only", seed=1)``; ``None`` kwargs use defaults.

    Raises:
        DassEdgeError: unknown name.
    """
    if name not in BASELINES:
        raise DassEdgeError(f"unknown baseline {name!r}; known baselines: {', '.join(list_baselines())}")
    model = BASELINES[name](**{k: v for k, v in kwargs.items() if v is not None})
    model.name = name
    return model


# --- training-free baselines ----------------------------------------------------------------------------------
class TaskAttributeBaseline(Baseline):
    """Scores a student by a per-student attribute of the :class:`MetaTask` (``params``, ``flops``)."""

    def __init__(self, attribute: str) -> None:
        self.attribute = attribute

    def score(self, task: MetaTask, context: TaskContext | None = None) -> np.ndarray:
        values = np.asarray(getattr(task, self.attribute), dtype=float)
        if values.shape != (len(task),):
            raise DassEdgeError(f"task {task.name} has {values.size} {self.attribute} values for {len(task)} students")
        return values


class ProxyBaseline(Baseline):
    """A zero-cost proxy of each student remapped from the context's teacher, on the context batch.

    The global torch RNG is seeded before every student (and restored afterwards), so scores do not depend
    on call order or on what ran before.
    """

    needs_context = True

    def __init__(self, proxy: str, remap_mode: str = "first", seed: int = 0) -> None:
        if proxy not in PROXIES:
            raise DassEdgeError(f"unknown proxy {proxy!r}; known: {', '.join(sorted(PROXIES))}")
        self.proxy, self.remap_mode, self.seed = proxy, remap_mode, seed

    def score(self, task: MetaTask, context: TaskContext | None = None) -> np.ndarray:
        if context is None or context.teacher is None:
            raise DassEdgeError(f"proxy baseline {self.proxy} needs a task context with the teacher (task_context())")
        x, y = context.x, context.targets
        out = []
        for arch in task.archs:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                out.append(score_proxy(self.proxy, remap(context.teacher, arch, self.remap_mode), x, y))
        scores = np.asarray(out, dtype=float)
        # A NaN score ranks last rather than poisoning the rank metrics (an overflow to +inf still ranks first).
        return np.where(np.isnan(scores), -np.inf, scores)


# --- learned baselines ----------------------------------------------------------------------------------------
def _standardize(y: torch.Tensor) -> torch.Tensor:
    return (y - y.mean()) / y.std().clamp_min(1e-6) if len(y) > 1 else y - y.mean()


def _check_train_tasks(name: str, train_tasks: Sequence[MetaTask]) -> list[MetaTask]:
    usable = [t for t in train_tasks if len(t) >= 2]
    if not usable:
        raise DassEdgeError(f"baseline {name} needs at least one meta-training task with 2 or more students")
    dims = {int(t.codes.shape[1]) for t in usable}
    if len(dims) != 1:
        raise DassEdgeError(f"baseline {name}: meta-training tasks have arch codes of different lengths {sorted(dims)}")
    return usable


class ArchOnlyBaseline(Baseline):
    """MLP on the teacher-relative arch code, trained on per-task standardized labels (MSE).

    Standardizing per task removes each task's mean and spread, so the MLP learns only which students rank
    higher within a task, and nothing about the dataset or teacher.

    Args:
        hidden: MLP width (default 64).
        steps: full-batch Adam steps (default 400).
        lr, weight_decay: Adam settings (defaults 3e-3, 1e-4).
        seed: initialization seed (default 0).
    """

    trainable = True

    def __init__(self, hidden: int = 64, steps: int = 400, lr: float = 3e-3, weight_decay: float = 1e-4,
                 seed: int = 0) -> None:
        self.hidden, self.steps, self.lr, self.weight_decay, self.seed = hidden, steps, lr, weight_decay, seed
        self.net: nn.Module | None = None

    def fit(self, train_tasks: Sequence[MetaTask], contexts: Mapping[str, TaskContext] | None = None) -> Baseline:
        tasks = _check_train_tasks("arch_only", train_tasks)
        codes = torch.cat([t.codes.float() for t in tasks])
        target = torch.cat([_standardize(t.labels.float()) for t in tasks])
        g = torch.Generator().manual_seed(self.seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            net = nn.Sequential(nn.Linear(codes.shape[1], self.hidden), nn.ReLU(), nn.Linear(self.hidden, self.hidden),
                                nn.ReLU(), nn.Linear(self.hidden, 1))
        opt = torch.optim.Adam(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        batch = min(256, len(codes))
        for _ in range(self.steps):
            idx = torch.randperm(len(codes), generator=g)[:batch]
            loss = F.mse_loss(net(codes[idx]).squeeze(-1), target[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        self.net = net.eval()
        return self

    @torch.no_grad()
    def score(self, task: MetaTask, context: TaskContext | None = None) -> np.ndarray:
        if self.net is None:
            raise DassEdgeError("baseline arch_only is not fitted; call fit(train_tasks) first")
        return self.net(task.codes.float()).squeeze(-1).double().numpy()


#: Side of the images the MetaD2A set encoder sees (every task is resized to it).
ENCODER_RESOLUTION = 16


class _RandomFeatures(nn.Module):
    """A fixed, seeded random CNN: per-image features that depend only on the image (never trained)."""

    def __init__(self, in_chans: int, width: int, seed: int) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = nn.Sequential(
                nn.Conv2d(in_chans, width, 3, 1, 1), nn.ReLU(), nn.Conv2d(width, 2 * width, 3, 2, 1), nn.ReLU(),
                nn.Conv2d(2 * width, 2 * width, 3, 2, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
            )
        self.requires_grad_(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # Same fixed normalization for every task: per-task statistics would erase what tells datasets apart.
        x = (images.float() / 255.0 - 0.5) / 0.25
        if x.shape[-1] != ENCODER_RESOLUTION or x.shape[-2] != ENCODER_RESOLUTION:
            x = F.interpolate(x, size=(ENCODER_RESOLUTION, ENCODER_RESOLUTION), mode="area")
        return self.net(x)


class _MetaD2ANet(nn.Module):
    """Set encoder (intra-class then inter-class mean pooling, DeepSets) + arch encoder → accuracy."""

    def __init__(self, feat_dim: int, code_dim: int, hidden: int) -> None:
        super().__init__()
        self.intra = nn.Sequential(nn.Linear(feat_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
        self.inter = nn.Sequential(nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
        self.arch = nn.Linear(code_dim, hidden)
        self.head = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def encode_dataset(self, feats: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """``(B, F)`` image features with their ``(B,)`` classes → one ``(hidden,)`` dataset vector."""
        h = self.intra(feats)
        protos = torch.stack([h[classes == c].mean(0) for c in torch.unique(classes)])
        return self.inter(protos).mean(0)

    def forward(self, dataset: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        d = dataset.expand(len(codes), -1)
        return self.head(torch.cat([d, self.arch(codes)], dim=1)).squeeze(-1)


class MetaD2ABaseline(Baseline):
    """MetaD2A-style predictor: dataset (set of images) encoding + arch code → accuracy, trained with MSE.

    Image features come from a fixed random CNN (too few meta-training tasks to learn one); the set encoder
    and the regressor are learned. As in MetaD2A the target is the accuracy itself (a fraction), not a
    teacher- or KD-aware quantity. A meta-training task without a context gets its images from the built-in
    task of the same name (``load_task(name, resolution)``), seeded like :func:`task_context`.

    Args:
        hidden: width of the set encoder and regressor (default 32).
        feat_width: random CNN width (default 16).
        steps: Adam steps, one task per step in a seeded order (default 1500).
        lr, weight_decay: Adam settings (defaults 2e-3, 1e-4).
        resolution: resolution to load images of tasks without a context at (default 16, the DB's).
        batch_size: images per task (default :data:`CONTEXT_BATCH`).
        seed: seed of the random CNN, initialization and task order (default 0).
    """

    trainable = True
    needs_context = True

    def __init__(self, hidden: int = 32, feat_width: int = 16, steps: int = 1500, lr: float = 2e-3,
                 weight_decay: float = 1e-4, resolution: int = 16, batch_size: int = CONTEXT_BATCH,
                 seed: int = 0) -> None:
        self.hidden, self.feat_width, self.steps, self.lr = hidden, feat_width, steps, lr
        self.weight_decay, self.resolution, self.batch_size, self.seed = weight_decay, resolution, batch_size, seed
        self.features: _RandomFeatures | None = None
        self.feat_stats: tuple[torch.Tensor, torch.Tensor] | None = None
        self.net: _MetaD2ANet | None = None
        self.label_stats = (0.0, 1.0)

    def _images(self, task: MetaTask, contexts: Mapping[str, TaskContext] | None) -> TaskContext:
        if contexts is not None and task.name in contexts:
            return contexts[task.name]
        data = load_task(task.name, resolution=self.resolution)
        return context_from_split(task.name, data.train, None, self.batch_size, self.seed)

    def _features(self, ctx: TaskContext) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.features is not None and self.feat_stats is not None
        mean, std = self.feat_stats
        return (self.features(ctx.images) - mean) / std, ctx.targets

    def fit(self, train_tasks: Sequence[MetaTask], contexts: Mapping[str, TaskContext] | None = None) -> Baseline:
        tasks = _check_train_tasks("metad2a", train_tasks)
        ctxs = [self._images(t, contexts) for t in tasks]
        self.features = _RandomFeatures(int(ctxs[0].images.shape[1]), self.feat_width, self.seed)
        # Feature scaling fixed from all meta-training images, then applied unchanged to every task.
        raw = torch.cat([self.features(c.images) for c in ctxs])
        self.feat_stats = (raw.mean(0), raw.std(0).clamp_min(1e-3))
        sets = [self._features(c) for c in ctxs]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            net = _MetaD2ANet(int(sets[0][0].shape[1]), int(tasks[0].codes.shape[1]), self.hidden)
        # Targets standardized over all meta-training students (as MetaD2A's predictor does): raw fractions
        # spread over ~0.1 give gradients too small to learn the arch part in a few steps.
        all_labels = torch.cat([t.labels.float() for t in tasks])
        mu, sd = all_labels.mean(), all_labels.std().clamp_min(1e-6)
        opt = torch.optim.Adam(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        g = torch.Generator().manual_seed(self.seed)
        order = torch.cat([torch.randperm(len(tasks), generator=g) for _ in range(math.ceil(self.steps / len(tasks)))])
        for i in order[: self.steps].tolist():
            feats, classes = sets[i]
            pred = net(net.encode_dataset(feats, classes), tasks[i].codes.float())
            loss = F.mse_loss(pred, (tasks[i].labels.float() - mu) / sd)
            opt.zero_grad()
            loss.backward()
            opt.step()
        self.net, self.label_stats = net.eval(), (float(mu), float(sd))
        return self

    @torch.no_grad()
    def score(self, task: MetaTask, context: TaskContext | None = None) -> np.ndarray:
        """Predicted accuracy (a fraction) of each student."""
        if self.net is None or self.features is None:
            raise DassEdgeError("baseline metad2a is not fitted; call fit(train_tasks) first")
        if context is None:
            raise DassEdgeError(f"baseline metad2a needs the context of task {task.name} (its images)")
        feats, classes = self._features(context)
        z = self.net(self.net.encode_dataset(feats, classes), task.codes.float()).double().numpy()
        mu, sd = self.label_stats
        return mu + sd * z


# --- registered factories -------------------------------------------------------------------------------------
@register_baseline
def params() -> Baseline:
    """Parameter count of the student."""
    return TaskAttributeBaseline("params")


@register_baseline
def flops() -> Baseline:
    """FLOPs (multiply-accumulates) of the student at the task's resolution."""
    return TaskAttributeBaseline("flops")


def _proxy_baseline(proxy: str) -> BaselineFactory:
    def factory(**kwargs) -> Baseline:
        return ProxyBaseline(proxy, **kwargs)

    factory.__name__ = proxy
    factory.__doc__ = f"Zero-cost proxy {proxy} of the remapped student on the context batch: {PROXIES[proxy].__doc__}"
    return factory


for _proxy in PROXIES:  # every registered proxy is a baseline: proxies are listed once, in proxies.py
    register_baseline(_proxy_baseline(_proxy))


@register_baseline
def arch_only(**kwargs) -> Baseline:
    """MLP on the arch code alone (no dataset, no teacher)."""
    return ArchOnlyBaseline(**kwargs)


@register_baseline
def metad2a(**kwargs) -> Baseline:
    """MetaD2A-style dataset-encoder predictor (images + arch code; no KD signal)."""
    return MetaD2ABaseline(**kwargs)


# --- ceiling --------------------------------------------------------------------------------------------------
def seed_ceiling(task: MetaTask, k: int = 5) -> dict[str, float]:
    """Rank metrics of seed 1's labels used as a prediction of seed 0's, on students trained with both.

    Label noise bounds every predictor: none can be expected to rank seed 0 better than another seed does.
    Entries are NaN when fewer than :data:`MIN_CEILING_STUDENTS` students have both seeds.
    """
    s0, s1 = task.seed_labels.get(0), task.seed_labels.get(1)
    nan = {"spearman": math.nan, "kendall": math.nan, "top5": math.nan, "regret": math.nan}
    if s0 is None or s1 is None:
        return nan
    a, b = np.asarray(s0, dtype=float), np.asarray(s1, dtype=float)
    both = np.isfinite(a) & np.isfinite(b)
    if both.sum() < MIN_CEILING_STUDENTS:
        return nan
    return rank_metrics(b[both], a[both], k=k)


# The stronger baselines live in their own module and register themselves here (after everything above exists).
from dass_edge.predictor import strong_baselines as _strong_baselines  # noqa: E402, F401

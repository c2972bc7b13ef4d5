"""A hybrid predictor: a linear model on size and zero-cost features plus a small learned residual.

Across the meta-database, size features (:func:`ridge_features`) and synflow explain most of a task's
order; a learned model that has to rediscover them from one-hot codes can end up worse than its own
inputs. The hybrid starts from the ridge fit on those features (closed form, labels standardized per
task) and adds a small MLP on ``[arch code, features]`` trained on what the linear part leaves over,
with strong weight decay, so at worst it stays close to the linear part.

With ``probe=True`` the linear part also gets every feature multiplied by the task's probe ratios
(:func:`dass_edge.predictor.task_probe.probe_ratios`, clipped to the meta-training tasks' range and
centered on their mean): the
weight of, say, log params becomes a linear function of how early the teacher solves the task, which
is what flips the within-band order between glyph and texture tasks. This is the shipped predictor v2
("dass-hybrid"), chosen over the neural DaSS network by cross-validation (BENCHMARKS.md).

``descriptors`` add named teacher descriptors (:data:`TEACHER_DESCRIPTORS`: its stem, depth, width, level,
classes, last-stage map side, the task's colour probe) to the probe ratios as modulators. The shipped predictor
uses the stem: an ImageNet-stem teacher's students order unlike a small-stem one's with the same probe profile, and
one predictor has to serve both families (BENCHMARKS.md, session 7: not worse on any cross-validated metric). Depth,
width and classes are under-determined with a dozen meta-training tasks and five teacher shapes (depth helped in
cross-validation and hurt a held-out task); they are here so a larger database can test them with a rule fixed
in advance.

Extra per-student features (e.g. log synflow of the remapped student over the teacher's) are passed in
by the caller as ``(N, k)`` arrays, so this module does no network evaluation itself.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from dass_edge.errors import DassEdgeError
from dass_edge.predictor.band_metrics import cost_bands
from dass_edge.predictor.meta_tasks import MetaTask
from dass_edge.predictor.strong_baselines import ridge_features
from dass_edge.predictor.task_probe import probe_ratios
from dass_edge.spec import block_layout, conv_out

__all__ = ["TEACHER_DESCRIPTORS", "HybridPredictor", "single_block_indicators", "standardized"]

_SIZE_COLUMNS = 2  # ridge_features starts with log(FLOPs / teacher's) and its square
_RIDGE_WIDTH = 11  # columns of ridge_features
_STAGES = 4  # single_block_indicators: one column per stage
#: Prior strength of K-shot adaptation (:meth:`HybridPredictor.adapted`).
KSHOT_STRENGTH = 10.0


def _probe_level(task: MetaTask) -> float:
    """The teacher's stage-4 probe accuracy on the task (how hard the task is for it; NaN if unknown)."""
    if task.probe_profile is None:
        raise DassEdgeError(f"task {task.name} has no probe profile for the 'level' descriptor")
    return float(task.probe_profile[3])


def _map_side(task: MetaTask) -> float:
    """log2 of the teacher's last-stage feature-map side over 2: 0 for a 16 px small-stem or a 64 px ImageNet-stem
    teacher (2x2 maps), 1 for a 32 px small-stem one (4x4). The probe ratios do not see resolution, and at 4x4 a
    one-block last stage distills far worse than at 2x2 (BENCHMARKS.md, session 21)."""
    _in_ch, _out_ch, stride, side, _proj = block_layout(task.spec)[-1]
    return float(np.log2(conv_out(side, stride) / 2.0))


def _colour(task: MetaTask) -> float:
    """log of the colour-histogram probe's accuracy over chance: about 0 where the colours are drawn at random
    (the glyphs), 0.5-1 on the colour emoji, above 2 on photographs. Floored at log 0.5 (a probe below half of chance
    is noise, not a property of the task); NaN (no images) reads as the average task."""
    if task.colour_probe is None:
        raise DassEdgeError(f"task {task.name} has no colour probe for the 'colour' descriptor")
    return float(np.log(max(task.colour_probe * task.spec.num_classes, 0.5)))


#: Descriptors of the teacher on its task that a hybrid may add to its modulators (``descriptors=``): one
#: number per task. All but ``level`` and ``colour`` read the teacher's spec only; ``level`` reads the probe
#: profile the search computes anyway (the ratios divide it out), ``colour`` the task's colour probe.
TEACHER_DESCRIPTORS = {
    "stem": lambda task: 1.0 if task.spec.stem == "imagenet" else 0.0,  # early downsampling (7x7/2 + max-pool)
    "depth": lambda task: float(np.log(sum(len(s) for s in task.spec.stages) / 8.0)),  # blocks, vs ResNet-18's 8
    "width": lambda task: float(np.log(task.spec.stages[-1][0] / 128.0)),  # last-stage width
    "classes": lambda task: float(np.log(task.spec.num_classes / 26.0)),
    "level": _probe_level,
    "map": _map_side,
    "colour": _colour,
}


def single_block_indicators(task: MetaTask) -> np.ndarray:
    """``(N, 4)``: 1 where a student's stage has a single block. Going from one block to two costs far more
    accuracy than from two to three (at 32 px a one-block last stage keeps a median 0.64 of the teacher's accuracy
    against 0.98; BENCHMARKS.md, session 21), a step the linear depth terms of :func:`ridge_features` fit badly."""
    return np.array([[float(d == 1) for d in a.depths] for a in task.archs]).reshape(len(task), _STAGES)


def standardized(y: np.ndarray) -> np.ndarray:
    """Labels of one task minus their mean, over their standard deviation (only the order in a task counts)."""
    sd = y.std()
    return (y - y.mean()) / sd if sd > 1e-12 else y - y.mean()


class HybridPredictor:
    """``score = ridge(features) + residual_mlp([code, features])``, fitted on meta-training tasks.

    Args:
        alpha: ridge penalty on the standardized features' weights.
        residual_steps: full-batch Adam steps of the residual MLP (0: linear part only).
        hidden, lr, weight_decay, seed: the residual MLP's settings.
        probe: also fit the features times the task's probe ratios (every task needs ``probe_profile``).
        probe_size: let the ratios modulate the size terms (log FLOPs and its square) too; off, they modulate
            only the shape terms (params at equal FLOPs, depths, widths), and the size trend is shared by all
            tasks: inside a band FLOPs hardly vary, and a task whose ratios lie outside the meta-training
            range cannot reverse the size trend.
        probe_clip: clip a task's ratios to the meta-training tasks' range (never extrapolate the profile).
        descriptors: names of :data:`TEACHER_DESCRIPTORS` that modulate the weights beside the probe ratios
            (clipped and centered the same way).
        within_band: 0 fits every weight on the tasks' whole range. ``k > 0`` fits the shape terms on
            contrasts inside equal-FLOPs bands of ``k`` students (features and labels minus their band's mean),
            then the size terms (log FLOPs and its square, with their modulations) on what that leaves, over the
            whole range. Across a task's range params, depth and width move with size, so a whole-range fit
            credits them with size's effect; the search compares students of equal cost, where only the
            within-band contrasts say which shape distills better.
        partial_size: with ``within_band``, fit the shape weights on the contrasts jointly with the size terms
            (shape effects holding FLOPs fixed inside each band; only the shape weights are kept). Bands of an
            evenly sampled task still span a range of FLOPs, and without the size terms that spread is credited
            to params and depth.
        single_blocks: add :func:`single_block_indicators` (one 0/1 column per stage) to the shape terms.
        free_size: leave the two unmodulated size columns (log FLOPs over the teacher's and its square) out of the
            ridge penalty. The penalty then shrinks the shape and modulated terms toward the size trend rather than
            toward no trend at all, so where they are noisy the model falls back on the input that picks well by
            itself. Cross-validated on 22 tasks it changed little (regret -0.09 points, interval across 0) and is
            not the shipped recipe (BENCHMARKS.md, session 17).
    """

    def __init__(self, alpha: float = 1.0, residual_steps: int = 300, hidden: int = 32, lr: float = 3e-3,
                 weight_decay: float = 1e-2, seed: int = 0, probe: bool = False, probe_size: bool = False,
                 probe_clip: bool = True, descriptors: Sequence[str] = (), within_band: int = 0,
                 partial_size: bool = False, free_size: bool = False, single_blocks: bool = False) -> None:
        unknown = [d for d in descriptors if d not in TEACHER_DESCRIPTORS]
        if unknown:
            raise DassEdgeError(f"unknown teacher descriptor(s) {', '.join(unknown)}; known: "
                                f"{', '.join(TEACHER_DESCRIPTORS)}")
        self.descriptors = tuple(descriptors)
        self.alpha, self.residual_steps, self.hidden = alpha, residual_steps, hidden
        self.lr, self.weight_decay, self.seed, self.probe = lr, weight_decay, seed, probe
        self.probe_size, self.probe_clip = probe_size, probe_clip
        if within_band < 0 or within_band == 1:
            raise DassEdgeError(f"within_band must be 0 (whole range) or a band size of 2 or more, got {within_band}")
        self.within_band = int(within_band)
        if partial_size and not self.within_band:
            raise DassEdgeError("partial_size needs within_band (a band size of 2 or more)")
        self.partial_size = bool(partial_size)
        if free_size and self.within_band:
            raise DassEdgeError("free_size fits the whole range; it cannot be combined with within_band")
        self.free_size = bool(free_size)
        self.single_blocks = bool(single_blocks)
        self.probe_range: np.ndarray | None = None  # (2, M): the meta-training tasks' min and max modulators
        self.mean: np.ndarray | None = None
        self.scale: np.ndarray | None = None
        self.coef: np.ndarray | None = None
        self.probe_center: np.ndarray | None = None
        self.net: nn.Module | None = None

    @property
    def _modulated(self) -> bool:
        return self.probe or bool(self.descriptors)

    def _width(self) -> int:
        """Columns of the fitted design without extra features: the ridge features, plus each modulator (3 probe
        ratios, the descriptors) times the terms they modulate."""
        base = _RIDGE_WIDTH + (_STAGES if self.single_blocks else 0)
        modulated = base - (0 if self.probe_size else _SIZE_COLUMNS)
        return base + len(self._modulators()) * modulated

    def _size_columns(self, width: int) -> np.ndarray:
        """Which of ``width`` design columns are size terms: log FLOPs and its square, and their modulations."""
        size = np.zeros(width, dtype=bool)
        size[:_SIZE_COLUMNS] = True
        if self._modulated and self.probe_size:
            count = len(self._modulators())
            base = width // (1 + count)
            for m in range(1, 1 + count):
                size[m * base : m * base + _SIZE_COLUMNS] = True
        return size

    def _modulators(self) -> list[str]:
        """One name per modulator column group: the 3 probe ratios, then the descriptors (as :meth:`_ratios`)."""
        return (["probe"] * 3 if self.probe else []) + list(self.descriptors)

    def _ridge(self, z: np.ndarray, y: np.ndarray, free: int = 0) -> np.ndarray:
        """Ridge weights of ``z`` for ``y``; the first ``free`` columns carry no penalty."""
        penalty = np.full(z.shape[1], self.alpha)
        penalty[:free] = 0.0
        return np.linalg.solve(z.T @ z + np.diag(penalty), z.T @ y)

    def _fit_within_band(self, tasks: Sequence[MetaTask], z: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Shape weights from within-band contrasts, then size weights on the rest (see ``within_band``)."""
        size = self._size_columns(z.shape[1])
        zc, yc, start = [], [], 0
        for t in tasks:
            for band in cost_bands(np.asarray(t.flops, dtype=float), self.within_band, min_students=2):
                rows = start + band
                zc.append(z[rows] - z[rows].mean(0))
                yc.append(y[rows] - y[rows].mean())
            start += len(t)
        coef = np.zeros(z.shape[1])
        if zc:
            zc, yc = np.concatenate(zc), np.concatenate(yc)
            if self.partial_size:  # size terms in the fit, so leftover FLOPs spread is not credited to shape
                coef[~size] = self._ridge(zc, yc)[~size]
            else:
                coef[~size] = self._ridge(zc[:, ~size], yc)
        rest = y - z[:, ~size] @ coef[~size]
        coef[size] = self._ridge(z[:, size], rest - rest.mean())
        return coef

    def _ratios(self, task: MetaTask) -> np.ndarray:
        """The task's modulators: its probe ratios (``probe``), then its teacher's descriptors."""
        parts = []
        if self.probe:
            if task.probe_profile is None:
                raise DassEdgeError(f"task {task.name} has no probe profile; the probe predictor needs the "
                                    "teacher's per-stage probe accuracies (load_meta_tasks computes them)")
            parts.append(probe_ratios(task.probe_profile))
        if self.descriptors:
            if task.spec is None:
                raise DassEdgeError(f"task {task.name} carries no teacher spec for the teacher descriptors")
            parts.append(np.array([TEACHER_DESCRIPTORS[d](task) for d in self.descriptors]))
        return np.concatenate(parts)

    def _modulator_values(self, task: MetaTask) -> np.ndarray:
        """The task's modulators as the fitted design uses them: an unknown ratio (no validation images) reads as
        the average task, clipped to the meta-training range, centered."""
        r = self._ratios(task)
        if self.probe_center is not None:
            r = np.where(np.isfinite(r), r, self.probe_center)
        if self.probe_clip and self.probe_range is not None:
            r = np.clip(r, self.probe_range[0], self.probe_range[1])
        return r - self.probe_center

    def _features(self, task: MetaTask, extra: np.ndarray | None) -> np.ndarray:
        x = ridge_features(task)
        if self.single_blocks:
            x = np.column_stack([x, single_block_indicators(task)])
        if extra is not None:
            extra = np.asarray(extra, dtype=float).reshape(len(task), -1)
            x = np.column_stack([x, extra])
        if self._modulated:
            r = self._modulator_values(task)
            mod = x if self.probe_size else x[:, _SIZE_COLUMNS:]
            x = np.column_stack([x] + [mod * v for v in r])
        return x

    def fit(self, tasks: Sequence[MetaTask], extra: Mapping[str, np.ndarray] | None = None) -> HybridPredictor:
        """Fit on ``tasks`` (``extra``: per task name, ``(N, k)`` extra features)."""
        tasks = [t for t in tasks if len(t) >= 2]
        if not tasks:
            raise DassEdgeError("the hybrid predictor needs a meta-training task with 2 or more students")
        if self._modulated:
            ratios = np.array([self._ratios(t) for t in tasks])
            self.probe_center, self.probe_range = ratios.mean(0), np.stack([ratios.min(0), ratios.max(0)])
        x = np.concatenate([self._features(t, (extra or {}).get(t.name)) for t in tasks])
        y = np.concatenate([standardized(t.labels.numpy().astype(float)) for t in tasks])
        self.mean, self.scale = x.mean(0), np.where(x.std(0) > 1e-9, x.std(0), 1.0)
        z = (x - self.mean) / self.scale
        if self.within_band:
            self.coef = self._fit_within_band(tasks, z, y)
        else:
            self.coef = self._ridge(z, y - y.mean(), free=_SIZE_COLUMNS if self.free_size else 0)
        if self.residual_steps > 0:
            codes = torch.cat([t.codes.float() for t in tasks])
            inp = torch.cat([codes, torch.as_tensor(z, dtype=torch.float32)], 1)
            target = torch.as_tensor(y - z @ self.coef, dtype=torch.float32)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                net = nn.Sequential(nn.Linear(inp.shape[1], self.hidden), nn.Tanh(), nn.Linear(self.hidden, 1))
            opt = torch.optim.AdamW(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
            for _ in range(self.residual_steps):
                loss = torch.mean((net(inp).squeeze(-1) - target) ** 2)
                opt.zero_grad()
                loss.backward()
                opt.step()
            self.net = net.eval()
        return self

    def adapted(self, task: MetaTask, support: Sequence[int], strength: float = KSHOT_STRENGTH) -> HybridPredictor:
        """K-shot adaptation: the meta-learned weights as a prior, moved toward ``task``'s labelled students
        ``support`` (indices into the task; e.g. students the user already distilled).

        The support labels are first put on the model's scale (``y ~ a + b * prediction`` by least squares,
        since the model predicts standardized accuracy), then the weights solve
        ``min |z w - t|^2 + strength * |w - w_meta|^2``: with few students they barely move, with many they
        follow the task. ``strength`` 10 was chosen by leave-one-task-out simulation on the meta-training
        tasks (BENCHMARKS.md). The residual MLP, if any, is kept as it is.
        """
        if self.coef is None or self.mean is None or self.scale is None:
            raise DassEdgeError("the hybrid predictor is not fitted; call fit(tasks) first")
        idx = np.asarray(support, dtype=int)
        if len(idx) < 2:
            raise DassEdgeError(f"K-shot adaptation needs 2 or more labelled students, got {len(idx)}")
        if len(self.coef) != self._width():
            raise DassEdgeError("K-shot adaptation supports hybrids fitted without extra features")
        z = (self._features(task, None) - self.mean) / self.scale
        zk, y = z[idx], task.labels.numpy().astype(float)[idx]
        prior = zk @ self.coef
        b = float(np.cov(prior, y)[0, 1] / np.var(prior, ddof=1)) if np.var(prior) > 1e-12 else 0.0
        if not b > 1e-9:  # the prior orders them backwards (or not at all): match the spreads instead
            b = float(y.std() / prior.std()) if prior.std() > 1e-12 and y.std() > 0 else 1.0
        target = (y - (y.mean() - b * prior.mean())) / b
        out = copy.copy(self)
        out.coef = np.linalg.solve(zk.T @ zk + strength * np.eye(len(self.coef)), zk.T @ target + strength * self.coef)
        return out

    def to_state(self) -> tuple[dict[str, torch.Tensor], dict]:
        """Tensors and settings that :meth:`from_state` rebuilds the fitted model from (for safetensors; a
        model fitted with extra features cannot be saved, since search has no way to compute them)."""
        if self.coef is None or self.mean is None or self.scale is None:
            raise DassEdgeError("the hybrid predictor is not fitted; call fit(tasks) first")
        if len(self.coef) != self._width():
            raise DassEdgeError("a hybrid fitted with extra features cannot be saved as a search predictor")
        tensors = {"mean": self.mean, "scale": self.scale, "coef": self.coef}
        if self.probe_center is not None and self.probe_range is not None:
            tensors["probe_center"], tensors["probe_range"] = self.probe_center, self.probe_range
        out = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in tensors.items()}
        if self.net is not None:
            out |= {f"net.{k}": v.detach().clone() for k, v in self.net.state_dict().items()}
        config = {"kind": "hybrid", "alpha": self.alpha, "residual_steps": self.residual_steps, "hidden": self.hidden,
                  "lr": self.lr, "weight_decay": self.weight_decay, "seed": self.seed, "probe": self.probe,
                  "probe_size": self.probe_size, "probe_clip": self.probe_clip, "descriptors": list(self.descriptors),
                  "within_band": self.within_band, "partial_size": self.partial_size, "free_size": self.free_size,
                  "single_blocks": self.single_blocks, "residual": self.net is not None}
        return out, config

    @classmethod
    def from_state(cls, tensors: Mapping[str, torch.Tensor], config: Mapping) -> HybridPredictor:
        """The fitted model :meth:`to_state` described."""
        model = cls(**{k: config[k] for k in ("alpha", "residual_steps", "hidden", "lr", "weight_decay", "seed",
                                              "probe", "probe_size", "probe_clip")},
                    descriptors=tuple(config.get("descriptors", ())), within_band=int(config.get("within_band", 0)),
                    partial_size=bool(config.get("partial_size", False)),
                    free_size=bool(config.get("free_size", False)),
                    single_blocks=bool(config.get("single_blocks", False)))
        model.mean, model.scale, model.coef = (tensors[k].double().numpy() for k in ("mean", "scale", "coef"))
        width = model._width()
        if not len(model.mean) == len(model.scale) == len(model.coef) == width:
            raise KeyError(f"{len(model.coef)} weights where the config implies {width}")
        if "probe_center" in tensors:
            model.probe_center = tensors["probe_center"].double().numpy()
            model.probe_range = tensors["probe_range"].double().numpy()
        if config.get("residual"):
            net = nn.Sequential(nn.Linear(tensors["net.0.weight"].shape[1], model.hidden), nn.Tanh(),
                                nn.Linear(model.hidden, 1))
            net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
            model.net = net.eval()
        return model

    def score(self, task: MetaTask, extra: np.ndarray | None = None) -> np.ndarray:
        """One score per student of ``task`` (higher = predicted more accurate)."""
        if self.coef is None or self.mean is None or self.scale is None:
            raise DassEdgeError("the hybrid predictor is not fitted; call fit(tasks) first")
        z = (self._features(task, extra) - self.mean) / self.scale
        out = z @ self.coef
        if self.net is not None:
            inp = torch.cat([task.codes.float(), torch.as_tensor(z, dtype=torch.float32)], 1)
            with torch.no_grad():
                out = out + self.net(inp).squeeze(-1).double().numpy()
        return out

"""A hybrid predictor: a linear model on size and zero-cost features plus a small learned residual.

Across the meta-database, size features (:func:`ridge_features`) and synflow explain most of a task's
order; a learned model that has to rediscover them from one-hot codes can end up worse than its own
inputs. The hybrid starts from the ridge fit on those features (closed form, labels standardized per
task) and adds a small MLP on ``[arch code, features]`` trained on what the linear part leaves over,
with strong weight decay, so at worst it stays close to the linear part.

Extra per-student features (e.g. log synflow of the remapped student over the teacher's) are passed in
by the caller as ``(N, k)`` arrays, so this module does no network evaluation itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from dass_edge.errors import DassEdgeError
from dass_edge.predictor.meta_tasks import MetaTask
from dass_edge.predictor.strong_baselines import ridge_features

__all__ = ["HybridPredictor", "standardized"]


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
    """

    def __init__(self, alpha: float = 1.0, residual_steps: int = 300, hidden: int = 32, lr: float = 3e-3,
                 weight_decay: float = 1e-2, seed: int = 0) -> None:
        self.alpha, self.residual_steps, self.hidden = alpha, residual_steps, hidden
        self.lr, self.weight_decay, self.seed = lr, weight_decay, seed
        self.mean: np.ndarray | None = None
        self.scale: np.ndarray | None = None
        self.coef: np.ndarray | None = None
        self.net: nn.Module | None = None

    def _features(self, task: MetaTask, extra: np.ndarray | None) -> np.ndarray:
        x = ridge_features(task)
        if extra is not None:
            extra = np.asarray(extra, dtype=float).reshape(len(task), -1)
            x = np.column_stack([x, extra])
        return x

    def fit(self, tasks: Sequence[MetaTask], extra: Mapping[str, np.ndarray] | None = None) -> HybridPredictor:
        """Fit on ``tasks`` (``extra``: per task name, ``(N, k)`` extra features)."""
        tasks = [t for t in tasks if len(t) >= 2]
        if not tasks:
            raise DassEdgeError("the hybrid predictor needs a meta-training task with 2 or more students")
        x = np.concatenate([self._features(t, (extra or {}).get(t.name)) for t in tasks])
        y = np.concatenate([standardized(t.labels.numpy().astype(float)) for t in tasks])
        self.mean, self.scale = x.mean(0), np.where(x.std(0) > 1e-9, x.std(0), 1.0)
        z = (x - self.mean) / self.scale
        self.coef = np.linalg.solve(z.T @ z + self.alpha * np.eye(z.shape[1]), z.T @ (y - y.mean()))
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

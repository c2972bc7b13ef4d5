"""The DaSS predictor network and its Meta-SGD adaptation.

Inputs: the student's functional embedding S, its architecture encoding A, the teacher's
functional embedding T. S and T go through small conv encoders (two 3x3 stride-2 convs + ReLU +
global pool, averaged over the probe batch), A through a linear layer; the concatenation
[S, A, T] goes through Linear → Tanh → Linear to a predicted accuracy (a fraction in [0, 1]).

Meta-SGD (Li et al., 2017) learns a per-parameter inner learning rate ``alpha``. At search time
the predictor takes ``steps`` gradient steps on a support set — in DaSS the teacher itself with
its own accuracy ("teacher-guided adaptation"), which costs nothing — and predicts with the
adapted weights. Unlike the reference code, each inner step differentiates at the *current*
adapted weights, so more than one step is correct, and nothing squeezes away a batch of one.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.func import functional_call

__all__ = ["DaSSPredictor", "adapt", "predict", "target_offset", "trained_adapt_steps"]

Params = dict[str, torch.Tensor]


class MapEncoder(nn.Module):
    """``(N, B, C, g, g)`` embeddings → ``(N, hidden)``."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, hidden, 3, 2, 1), nn.ReLU(), nn.Conv2d(hidden, hidden, 3, 2, 1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, b = x.shape[:2]
        return self.net(x.reshape(n * b, *x.shape[2:])).reshape(n, b, -1).mean(1)


class DaSSPredictor(nn.Module):
    """Predicts a student's accuracy after KD from (S, A, T); any input can be switched off for ablations."""

    def __init__(self, embed_channels: int, arch_dim: int, hidden: int = 64,
                 use: Iterable[str] = ("student", "arch", "teacher"), init_alpha: float = 0.01) -> None:
        super().__init__()
        self.use = tuple(use)
        self.config = {"embed_channels": embed_channels, "arch_dim": arch_dim, "hidden": hidden, "use": list(self.use),
                       "init_alpha": init_alpha}
        dims = 0
        if "student" in self.use:
            self.student_enc = MapEncoder(embed_channels, hidden)
            dims += hidden
        if "arch" in self.use:
            self.arch_enc = nn.Linear(arch_dim, hidden)
            dims += hidden
        if "teacher" in self.use:
            self.teacher_enc = MapEncoder(embed_channels, hidden)
            dims += hidden
        if dims == 0:
            raise ValueError("the predictor needs at least one input")
        self.head = nn.Sequential(nn.Linear(dims, hidden), nn.Tanh(), nn.Linear(hidden, 1))
        # Meta-SGD: one learnable inner learning rate per parameter element (log-free; may go negative,
        # as in the paper, which lets the meta-learner pick the direction too).
        self.alpha = nn.ParameterDict({
            name.replace(".", "__"): nn.Parameter(torch.full_like(p, init_alpha))
            for name, p in self.base_params().items()
        })

    def base_params(self) -> Params:
        return {n: p for n, p in self.named_parameters() if not n.startswith("alpha.")}

    def forward(self, student: torch.Tensor, arch: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """``student``/``teacher``: ``(N, B, C, g, g)``; ``arch``: ``(N, D)`` → ``(N,)`` accuracies in [0, 1].

        An input given for one network only (``N = 1``, e.g. the one teacher of a search) is encoded once
        and broadcast; an input the model does not use may be ``None``.
        """
        parts = []
        if "student" in self.use:
            parts.append(self.student_enc(student))
        if "arch" in self.use:
            parts.append(self.arch_enc(arch))
        if "teacher" in self.use:
            parts.append(self.teacher_enc(teacher))
        n = max(p.shape[0] for p in parts)
        parts = [p.expand(n, -1) if p.shape[0] == 1 else p for p in parts]
        return self.head(torch.cat(parts, dim=1)).reshape(-1)


def trained_adapt_steps(model: DaSSPredictor) -> int:
    """The inner steps the model was meta-trained with (0 when it was trained without adaptation)."""
    return int(model.config.get("inner_steps", 1)) if model.config.get("adapt", True) else 0


def target_offset(model: DaSSPredictor, teacher_acc: float) -> float:
    """What to add to the model's raw output to get accuracy (fraction): the teacher's accuracy when it was
    trained on teacher-relative targets (``target = "relative"``), else 0."""
    return float(teacher_acc) if model.config.get("target", "absolute") == "relative" else 0.0


def predict(model: DaSSPredictor, params: Params, student: torch.Tensor, arch: torch.Tensor,
            teacher: torch.Tensor) -> torch.Tensor:
    """Forward with explicit (possibly adapted) parameters."""
    return functional_call(model, params, (student, arch, teacher), strict=False)


def adapt(model: DaSSPredictor, support: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
          steps: int = 1, create_graph: bool = False) -> Params:
    """Meta-SGD inner loop: ``steps`` steps of ``theta <- theta - alpha * grad`` on the support set.

    ``support`` = (student embeddings, arch encodings, teacher embeddings, accuracies). With
    ``create_graph`` (meta-training) the result stays differentiable w.r.t. theta and alpha.
    """
    params = model.base_params()
    if steps == 0:
        return dict(params)
    s, a, t, y = support
    head_only = model.config.get("adapt_scope", "all") == "head"
    for _ in range(steps):
        loss = torch.mean((predict(model, params, s, a, t) - y) ** 2)
        # "head": only the head moves (a one-image support set cannot re-learn the encoders).
        names = [n for n in params if n.startswith("head.")] if head_only else list(params)
        grads = torch.autograd.grad(loss, [params[n] for n in names], create_graph=create_graph, allow_unused=True)
        params = dict(params) | {
            n: (params[n] - model.alpha[n.replace(".", "__")] * g) if g is not None else params[n]
            for n, g in zip(names, grads)
        }
        if not create_graph:
            params = {n: p.detach().requires_grad_(True) for n, p in params.items()}
    return params

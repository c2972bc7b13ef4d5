"""KD losses registered by key (as torchdistill registers its losses): ``loss(student, teacher, labels)``.

A loss declares whether it reads the teacher's logits (``needs_teacher``), so distillation runs the
teacher and builds its output cache only for losses that use it. Add one with :func:`register_loss`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from dass_edge.errors import DassEdgeError
from dass_edge.validate import finite

__all__ = ["KDLoss", "LOSSES", "register_loss", "loss_needs_teacher", "get_loss", "kd_loss", "ce_loss"]

#: ``loss(student_logits, teacher_logits, labels) -> scalar``.
KDLoss = Callable[[torch.Tensor, torch.Tensor | None, torch.Tensor], torch.Tensor]
LOSSES: dict[str, Callable[..., KDLoss]] = {}


def register_loss(key: str, needs_teacher: bool = True) -> Callable[[Callable[..., KDLoss]], Callable[..., KDLoss]]:
    """Register a loss factory under ``key`` (its keyword arguments are the loss options).

    ``needs_teacher=False`` declares that the loss ignores the teacher's logits (it is called with
    ``None``), so distillation neither runs the teacher nor builds its output cache.
    """

    def deco(factory: Callable[..., KDLoss]) -> Callable[..., KDLoss]:
        if key in LOSSES:
            raise ValueError(f"loss {key!r} registered twice")
        factory.needs_teacher = needs_teacher  # type: ignore[attr-defined]
        LOSSES[key] = factory
        return factory

    return deco


def loss_needs_teacher(key: str) -> bool:
    """Whether the registered loss ``key`` reads the teacher's logits."""
    get_loss(key)  # a one-line error for an unknown key
    return bool(getattr(LOSSES[key], "needs_teacher", True))


def get_loss(key: str, **kwargs: float) -> KDLoss:
    if key not in LOSSES:
        raise DassEdgeError(f"no loss {key!r} registered; choose one of {', '.join(sorted(LOSSES))}")
    return LOSSES[key](**kwargs)


@register_loss("kd")
def kd_loss(alpha: float = 0.5, temperature: float = 6.0) -> KDLoss:
    """Hinton et al. 2015 as used by DaSS: ``α·CE(s, y) + (1−α)·T²·KL(softmax(t/T) ‖ softmax(s/T))``."""
    if not 0.0 <= finite(alpha, "alpha") <= 1.0:
        raise DassEdgeError(f"alpha must be in [0, 1], got {alpha}")
    if finite(temperature, "temperature") <= 0:
        raise DassEdgeError(f"temperature must be > 0, got {temperature}")

    def loss(s: torch.Tensor, t: torch.Tensor | None, y: torch.Tensor) -> torch.Tensor:
        ce = F.cross_entropy(s, y)
        kl = F.kl_div(F.log_softmax(s / temperature, 1), F.log_softmax(t / temperature, 1), reduction="batchmean",
                      log_target=True)
        return alpha * ce + (1.0 - alpha) * temperature**2 * kl

    return loss


@register_loss("ce", needs_teacher=False)
def ce_loss(alpha: float = 1.0, temperature: float = 1.0) -> KDLoss:
    """Plain cross-entropy (no teacher): the baseline KD is compared against."""

    def loss(s: torch.Tensor, t: torch.Tensor | None, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(s, y)

    return loss

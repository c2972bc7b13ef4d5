"""Zero-cost proxies: training-free scores of a network, used as baselines for the DaSS predictor.

Each proxy takes the (remapped) student, one batch of task images and labels, and returns a
float where higher should mean "more accurate after training". They are registered by key so the
evaluation runs a list of keys. Definitions follow Abdelfattah et al., "Zero-Cost Proxies for
Lightweight NAS" (ICLR 2021) and Mellor et al., "Neural Architecture Search without Training"
(jacov, the first version of the NASWOT score).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PROXIES", "register_proxy", "score_proxy"]

Proxy = Callable[[nn.Module, torch.Tensor, torch.Tensor], float]
PROXIES: dict[str, Proxy] = {}


def register_proxy(fn: Proxy) -> Proxy:
    """Register ``fn`` under its name; a name registered twice is a bug, so it raises ``ValueError``."""
    if fn.__name__ in PROXIES:
        raise ValueError(f"proxy {fn.__name__!r} registered twice")
    PROXIES[fn.__name__] = fn
    return fn


def _grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    return [(p, p.grad) for p in model.parameters() if p.grad is not None and p.dim() > 1]


@register_proxy
def grad_norm(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Sum of the L2 norms of the loss gradients of the weight tensors."""
    return float(sum(g.norm() for _, g in _grads(model, x, y)))


@register_proxy
def snip(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Connection sensitivity: sum of |w * dL/dw| over the weight tensors."""
    return float(sum((p.detach() * g).abs().sum() for p, g in _grads(model, x, y)))


@register_proxy
def synflow(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Synaptic flow: |w * dR/dw| with all weights made positive and an all-ones input (float64).

    BatchNorm uses its running statistics (eval mode), so the score reflects the remapped student.
    """
    net = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    net.zero_grad(set_to_none=True)
    net(torch.ones((1, *x.shape[1:]), dtype=torch.float64)).sum().backward()
    return float(sum((p.detach() * p.grad).abs().sum() for p in net.parameters() if p.grad is not None and p.dim() > 1))


@register_proxy
def jacov(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Jacobian covariance: how decorrelated the input-gradients of different images are."""
    inp = x.clone().requires_grad_(True)
    model.zero_grad(set_to_none=True)
    model(inp).sum().backward()
    jac = inp.grad.reshape(len(x), -1)
    corr = torch.corrcoef(jac.double())
    corr = torch.nan_to_num(corr, nan=0.0)
    eig = torch.linalg.eigvalsh(corr)
    k = 1e-5
    return float(-torch.sum(torch.log(eig.clamp_min(0) + k) + 1.0 / (eig.clamp_min(0) + k)))


def score_proxy(name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Score ``model`` with proxy ``name`` without changing its weights or mode."""
    if name not in PROXIES:
        raise KeyError(f"unknown proxy {name!r}; known: {', '.join(sorted(PROXIES))}")
    # A copy in train mode: gradient proxies use batch statistics, as at the start of training,
    # and the BN running statistics of the caller's model must not move.
    return PROXIES[name](copy.deepcopy(model).train(), x, y)

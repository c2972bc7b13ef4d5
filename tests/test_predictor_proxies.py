import pytest
import torch
from torch import nn

from dass_edge.predictor.proxies import PROXIES, score_proxy


class Linear2(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3, bias=False)

    def forward(self, x):
        return self.fc(x.flatten(1))


def _batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(8, 1, 2, 2, generator=g), torch.randint(0, 3, (8,), generator=g)


def test_registry_has_the_four_proxies():
    assert set(PROXIES) == {"grad_norm", "snip", "synflow", "jacov"}


def test_grad_norm_and_snip_match_hand_computation():
    model = Linear2()
    x, y = _batch()
    w = model.fc.weight.detach().clone().requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(x.flatten(1) @ w.T, y)
    (g,) = torch.autograd.grad(loss, w)
    assert score_proxy("grad_norm", model, x, y) == pytest.approx(float(g.norm()), rel=1e-5)
    assert score_proxy("snip", model, x, y) == pytest.approx(float((w.detach() * g).abs().sum()), rel=1e-5)


def test_synflow_of_linear_layer_is_sum_of_abs_weights_times_input():
    model = Linear2()
    x, y = _batch()
    # R = sum_j sum_i |w_ji| * 1  =>  |w * dR/dw| = |w|
    assert score_proxy("synflow", model, x, y) == pytest.approx(float(model.fc.weight.detach().abs().sum()), rel=1e-6)


def test_proxies_leave_weights_and_mode_unchanged(small_teacher):
    x = torch.randn(4, 3, 32, 32)
    y = torch.randint(0, 10, (4,))
    before = {k: v.clone() for k, v in small_teacher.state_dict().items()}
    for name in PROXIES:
        value = score_proxy(name, small_teacher, x, y)
        assert value == value and abs(value) < float("inf"), name  # finite
    assert not small_teacher.training
    for k, v in small_teacher.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_jacov_prefers_decorrelated_jacobians():
    x, y = _batch()

    class Shared(nn.Module):  # every image gets the same input-gradient -> fully correlated
        def forward(self, inp):
            return (inp * torch.ones_like(inp)).flatten(1).sum(1, keepdim=True)

    class Distinct(nn.Module):  # input-gradient depends on the image -> less correlated
        def forward(self, inp):
            return (inp**2).flatten(1).sum(1, keepdim=True)

    assert score_proxy("jacov", Distinct(), x, y) > score_proxy("jacov", Shared(), x, y)


def test_unknown_proxy():
    with pytest.raises(KeyError, match="unknown proxy"):
        score_proxy("nope", Linear2(), *_batch())

"""benchmarks/bench_refine_signals.py: the short run's signals, the weight average and the seventh rule's
verdict, on hand-made inputs whose answers are known."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from benchmarks.bench_refine_signals import REFERENCE, WeightAverage, candidates, curves_for, signal_values, verdict


def test_signals_of_known_logits():
    # two images, two classes: the first is right with p = sigmoid(2), the second wrong with the same margin
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    labels = torch.tensor([0, 0])
    p_right = 1 / (1 + torch.exp(torch.tensor(-2.0))).item()
    s = signal_values(logits, labels, torch.log_softmax(logits.double(), 1))
    assert s["acc"] == pytest.approx(50.0)
    assert s["soft"] == pytest.approx(100 * (p_right + (1 - p_right)) / 2)  # = 50: symmetric
    nll = -(torch.log(torch.tensor(p_right)) + torch.log(torch.tensor(1 - p_right))).item() / 2
    assert s["nll"] == pytest.approx(nll)
    assert s["kl"] == pytest.approx(0.0, abs=1e-12)  # the teacher's distribution is the student's own
    uniform = torch.log(torch.full((2, 2), 0.5, dtype=torch.float64))
    assert signal_values(logits, labels, uniform)["kl"] > 0.1


def test_weight_average_warms_up_then_follows_with_its_horizon():
    model = nn.Linear(1, 1, bias=False)
    avg = WeightAverage(horizon_steps=4)  # decay 0.75
    with torch.no_grad():
        model.weight.fill_(1.0)
    avg.update(model)  # the first step copies the weights
    assert avg.model.weight.item() == 1.0
    with torch.no_grad():
        model.weight.fill_(0.0)
    avg.update(model)  # warm-up: decay min(0.75, 2 / 11)
    assert avg.model.weight.item() == pytest.approx(2 / 11)
    for _ in range(200):
        avg.update(model)
    assert avg.model.weight.item() == pytest.approx(0.0, abs=1e-9)
    assert avg.decay == 0.75
    assert model.weight.item() == 0.0  # the average never writes into the model


def test_signals_rank_higher_first_and_two_seeds_average_the_accuracies():
    sig = {("t", "a"): {"acc": [1.0, 2.0, 3.0, 4.0], "nll": [3.0, 2.0, 1.0, 0.5]}}
    assert curves_for("nll", sig, {})[("t", "a")] == [-3.0, -2.0, -1.0, -0.5]
    assert curves_for("acc", sig, {})[("t", "a")] == [1.0, 2.0, 3.0, 4.0]
    assert curves_for("two_seeds", sig, {("t", "a"): [3.0, 4.0, 5.0, 6.0]})[("t", "a")] == [2.0, 3.0, 4.0]
    assert curves_for("two_seeds", sig, {}) == {}  # a finalist without seed 1 has no two-seed score


def _table(means: dict, spread: float = 0.0, tasks=tuple("abcdefghijklmnopqr")) -> dict:
    """Every candidate at 1.0 points of regret unless ``means`` says otherwise; ``spread`` alternates +-."""
    return {c: {t: means.get(c, 1.0) + (spread if i % 2 else -spread) for i, t in enumerate(tasks)}
            for c in candidates()}


def test_verdict_follows_the_seventh_rule():
    tasks = list("abcdefghijklmnopqr")
    ref = ("V0",) + REFERENCE
    assert "Partial (3 of 18" in verdict(_table({}), tasks[:3], 18)
    assert "no candidate passes" in verdict(_table({}), tasks, 18)
    # a 12-epoch signal 0.15 lower everywhere passes; 0.05 lower does not
    assert "ranked by soft at E = 3" in verdict(_table({("V0", "soft", 3): 0.85}), tasks, 18)
    assert "no candidate passes" in verdict(_table({("V0", "soft", 3): 0.95}), tasks, 18)
    # a 16-epoch one needs 0.20: 0.15 lower fails, 0.25 lower passes
    assert "no candidate passes" in verdict(_table({("V0", "acc", 4): 0.85}), tasks, 18)
    assert "ranked by acc at E = 4" in verdict(_table({("V0", "acc", 4): 0.75}), tasks, 18)
    # both pass, the 16-epoch one 0.04 lower: within 0.05, so the cheaper one wins
    assert "ranked by nll at E = 3" in verdict(_table({("V0", "nll", 3): 0.79, ("V0", "kl", 4): 0.75}), tasks, 18)
    # a drop whose task bootstrap interval reaches 0 fails: per-task differences alternate -0.9 / +0.6
    noisy = _table({})
    noisy[("V0", "ema_q", 3)] = {t: noisy[ref][t] + (-0.9 if i % 2 == 0 else 0.6) for i, t in enumerate(tasks)}
    assert "no candidate passes" in verdict(noisy, tasks, 18)

"""benchmarks/bench_fewshot_normalize.py: round factors and the normalized summary on hand-made rounds."""

from __future__ import annotations

import pytest

from benchmarks.bench_fewshot_normalize import normalized, round_factors
from dass_edge.latency.stats import summarize_rounds


def test_round_factors_remove_a_state_every_model_shared_and_keep_a_single_disturbance():
    base = [100.0, 200.0, 400.0, 800.0]  # four models' true per-call microseconds
    speed = [1.0, 1.0, 0.75, 0.75, 1.0, 1.0]  # rounds 3-4: the machine ran in a 25% faster state
    rounds = [[[b * s] * 5 for s in speed] for b in base]
    rounds[0][5] = [100.0 * 1.5] * 5  # one disturbed session of model 0
    f = round_factors(rounds)
    assert f == pytest.approx(speed)  # the single disturbance does not move its round's factor (median of 4)
    # raw, every model takes the fast state (its sessions near the fastest); normalized, the usual one
    raw = [s["p50_ms"] for s in map(summarize_rounds, rounds)]
    norm = [s["p50_ms"] for s in map(summarize_rounds, normalized(rounds))]
    assert raw == pytest.approx([0.75 * b / 1e3 for b in base])
    assert norm == pytest.approx([b / 1e3 for b in base])
    # a fast state that only one model of its rounds saw is not a round's state: normalization leaves it alone
    mixed = [[[100.0 * (0.75 if r in (2, 3) else 1.0)] * 5 for r in range(6)], [[200.0] * 5 for _ in range(6)],
             [[400.0] * 5 for _ in range(6)]]
    raw = [s["p50_ms"] for s in map(summarize_rounds, mixed)]
    norm = [s["p50_ms"] for s in map(summarize_rounds, normalized(mixed))]
    assert raw[0] / raw[1] == pytest.approx(0.375)
    assert norm[0] / norm[1] == pytest.approx(0.375)
    with pytest.raises(ValueError):
        round_factors([])

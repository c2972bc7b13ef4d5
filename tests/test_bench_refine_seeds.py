"""benchmarks/bench_refine_seeds.py: the honest refinement regret and the fifth and sixth rules' verdict, on
hand-made plans whose answers are known."""

from __future__ import annotations

import pytest

from benchmarks.bench_refine_seeds import CANDIDATES, early_score, regrets, verdict


def _doc() -> dict:
    """One task, one budget: students a, b, c fit; V0's finalists a, b; V6's finalist a."""
    return {"tasks": {"t": {"dass": {"a": 2.0, "b": 1.0, "c": 0.0},
                            "budgets": [{"fit": ["a", "b", "c"], "finalists": {"V0": ["a", "b"], "V6": ["a"]}}]}}}


def test_early_score_takes_the_epoch_or_the_mean_of_the_last_two():
    curve = [10.0, 20.0, 40.0]
    assert early_score(curve, 3, "last") == 40.0
    assert early_score(curve, 3, "mean2") == 30.0
    assert early_score(curve, 1, "mean2") == 10.0  # one epoch has no previous one


def test_regret_is_the_best_fitting_label_minus_the_pick_ranked_by_the_early_run():
    labels = {("t", "a"): 70.0, ("t", "b"): 75.0, ("t", "c"): 80.0}
    early = {("t", "a"): [50.0, 60.0], ("t", "b"): [55.0, 58.0]}
    # at epoch 1 b is ahead (regret 80 - 75), at epoch 2 a (80 - 70); the mean of both epochs: a 55 < b 56.5 -> b
    assert regrets(_doc(), early, labels, "V0", 1) == {"t": 5.0}
    assert regrets(_doc(), early, labels, "V0", 2) == {"t": 10.0}
    assert regrets(_doc(), early, labels, "V0", 2, "mean2") == {"t": 5.0}
    # a tie goes to the predictor's order (a)
    assert regrets(_doc(), {("t", "a"): [50.0], ("t", "b"): [50.0]}, labels, "V0", 1) == {"t": 10.0}
    # a task with a finalist not trained again sits out
    assert regrets(_doc(), {("t", "a"): [50.0, 60.0]}, labels, "V0", 1) == {}


def _table(means: dict, tasks=("x", "y", "z", "w")) -> dict:
    """Every candidate and twin at 1.0 points of regret on every task unless ``means`` says otherwise."""
    return {(p, e, r): {t: means.get((p, e, r), 1.0) for t in tasks}
            for p, e in CANDIDATES for r in ("last", "mean2")}


def test_verdict_keeps_the_shipped_setting_unless_a_candidate_clears_the_rule():
    tasks = ["x", "y", "z", "w"]
    assert "no verdict" in verdict(_table({}), tasks, 5)  # a partial run decides nothing
    # everything level: the cheapest within 0.05 of the best is V6 at E = 3 (6 epochs), not above V0-at-3: it wins
    assert "V6 at E = 3 (last, 6 epochs) replaces" in verdict(_table({}), tasks, 4)
    # V0 at 5 clearly lower (1.0 -> 0.8) and every cheaper candidate above it by more than 0.05: it replaces
    worse = {(p, e, r): 1.2 for p, e in CANDIDATES for r in ("last", "mean2") if p == "V6"}
    got = verdict(_table({**worse, ("V0", 5, "last"): 0.8}), tasks, 4)
    assert got.startswith("Verdict: V0 at E = 5 (last, 20 epochs) replaces") and "-0.20" in got
    # V0 at 5 lower by only 0.08: short of the 0.10 bar, V0 at 3 stays
    assert "V0 at E = 3 stays" in verdict(_table({**worse, ("V0", 5, "last"): 0.92, ("V0", 4, "last"): 1.2}),
                                          tasks, 4)
    # a twin only counts where it beats its plain candidate by more than 0.05
    got = verdict(_table({**worse, ("V0", 3, "mean2"): 0.97}), tasks, 4)
    assert "shipped one" in got
    got = verdict(_table({**worse, ("V0", 3, "mean2"): 0.9}), tasks, 4)
    assert got.startswith("Verdict: V0 at E = 3 (mean2, 12 epochs)")


@pytest.mark.parametrize("epochs", [3, 4, 5])
def test_every_v0_candidate_costs_four_finalists_times_its_epochs(epochs):
    from benchmarks.bench_refine_seeds import cost

    assert cost("V0", epochs) == 4 * epochs and cost("V6", epochs) == 2 * epochs


def test_heldout_floor_ranks_by_the_whole_run_and_by_epoch_3():
    from benchmarks.bench_refine_seeds import heldout_floor

    labels = {("t", "a"): 70.0, ("t", "b"): 75.0, ("t", "c"): 80.0}
    # seed 1: a ahead at epoch 3, b ahead after its whole run; the label's best finalist is b (c is no finalist)
    seed1 = {("t", "a"): {"val_acc": 71.0, "val_curve": [40.0, 50.0, 60.0]},
             ("t", "b"): {"val_acc": 74.0, "val_curve": [30.0, 45.0, 55.0]}}
    text = heldout_floor(_doc(), seed1, labels)
    assert "at epoch 3 10.00, by seed 1's whole 10-epoch run 5.00, by the label itself 5.00" in text

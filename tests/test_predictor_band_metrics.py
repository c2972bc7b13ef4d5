"""Budgeted metrics on hand-made tasks whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from dass_edge.predictor.band_metrics import (
    BandTask,
    band_spearman,
    budget_regret,
    cost_bands,
    paired_bootstrap,
    seed_noise_sd,
    simulated_ceiling,
)


def _task(n: int = 40, seed: int = 0):
    """Costs rising with index; accuracy = size trend + a within-band shape effect."""
    rng = np.random.default_rng(seed)
    costs = np.arange(1, n + 1, dtype=float)
    true = 50.0 + 0.5 * costs + rng.normal(0, 4.0, n)
    return true, costs


def test_bands_are_equal_count_in_cost_order_and_drop_small_ones():
    costs = [5, 1, 4, 2, 3, 9, 8, 7, 6, 10]
    bands = cost_bands(costs, band_size=5)
    assert [sorted(np.asarray(costs)[b].tolist()) for b in bands] == [[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]]
    assert cost_bands(costs[:4], band_size=5) == []  # 4 students: below the 5 a band needs
    assert [len(b) for b in cost_bands(list(range(7)), band_size=8)] == [7]  # one band of all 7
    assert [len(b) for b in cost_bands(list(range(17)), band_size=8)] == [9, 8]


def test_perfect_and_reversed_predictors_within_bands():
    true, costs = _task()
    assert band_spearman(true, true, costs) == pytest.approx(1.0)
    assert band_spearman(-true, true, costs) == pytest.approx(-1.0)
    # Cost alone: within bands the noise decides, so far below the full-range Spearman.
    full = stats.spearmanr(costs, true).statistic
    assert band_spearman(costs, true, costs) < full - 0.3


def test_band_spearman_is_the_mean_over_bands():
    true = np.array([1, 2, 3, 4, 5, 10, 9, 8, 7, 6], float)
    costs = np.arange(10.0)
    pred = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], float)  # right in band 1, reversed in band 2
    assert band_spearman(pred, true, costs, band_size=5) == pytest.approx(0.0)


def test_ties_and_constant_predictions():
    true, costs = _task()
    assert band_spearman(np.ones_like(true), true, costs) == 0.0
    r = budget_regret(np.ones_like(true), true, costs)
    # A constant predictor's pick is every fitting student at once: regret = best - mean of those that fit.
    fit = costs <= np.quantile(costs, 0.2)
    assert r["q20"] == pytest.approx(true[fit].max() - true[fit].mean())


def test_too_few_students_gives_nan():
    assert math.isnan(band_spearman([1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3, 4]))
    assert math.isnan(seed_noise_sd({0: [0.5, 0.6, 0.7, 0.8], 1: [0.5, 0.6, 0.7, 0.8]}))
    assert math.isnan(seed_noise_sd({0: [0.5] * 10}))


def test_budget_regret_hand_computed_and_excludes_the_teacher():
    costs = np.arange(1.0, 11.0)
    true = np.array([10, 30, 20, 40, 35, 50, 45, 60, 55, 99], float)  # the last is the teacher
    pred = -costs  # always picks the cheapest
    excl = np.zeros(10, bool)
    excl[-1] = True
    r = budget_regret(pred, true, costs, exclude=excl, quantiles=(0.5,))
    # Budget = median cost of the 9 non-teacher students = 5: best of costs 1..5 is 40, the pick is 10.
    assert r["q50"] == pytest.approx(30.0)
    assert budget_regret(true, true, costs, exclude=excl)["mean"] == 0.0
    # Without the exclusion the teacher sets the top budget's best and nobody else can reach it.
    assert budget_regret(true, true, costs, quantiles=(1.0,))["q100"] == 0.0
    assert budget_regret(true - 100 * excl, true, costs, quantiles=(1.0,))["q100"] == pytest.approx(39.0)


def test_use_budget_policy_picks_near_the_budget_hand_computed():
    costs = np.arange(1.0, 11.0)
    true = np.array([10, 30, 20, 40, 35, 50, 45, 60, 55, 99], float)
    pred = -costs  # the cheapest first: without the policy it picks cost 1
    # Budget 5 (median of 1..9 with the teacher excluded): best that fits is 40 (cost 4).
    excl = np.zeros(10, bool)
    excl[-1] = True
    plain = budget_regret(pred, true, costs, exclude=excl, quantiles=(0.5,))
    # d = 0.2: only costs >= 4 may be picked -> the predictor's top among {4, 5} is cost 4 (40): no regret.
    near = budget_regret(pred, true, costs, exclude=excl, quantiles=(0.5,), use_budget=0.2)
    assert plain["q50"] == pytest.approx(30.0) and near["q50"] == pytest.approx(0.0)
    # d = 0.1: only cost 5 (35) may be picked.
    assert budget_regret(pred, true, costs, exclude=excl, quantiles=(0.5,), use_budget=0.1)["q50"] == pytest.approx(5.0)
    # Nobody near the budget: the policy falls back to every student that fits.
    sparse = np.array([1.0, 2.0, 10.0, 11.0])
    r = budget_regret(-sparse, np.array([1.0, 5.0, 3.0, 4.0]), sparse, quantiles=(0.4,), use_budget=0.01)
    assert r["q40"] == pytest.approx(4.0)


def test_seed_noise_sd_recovers_the_simulated_noise():
    rng = np.random.default_rng(1)
    mu = rng.uniform(0.4, 0.9, 4000)
    a, b = mu + rng.normal(0, 0.01, 4000), mu + rng.normal(0, 0.01, 4000)
    b[::2] = np.nan  # only half the students have the second seed
    assert seed_noise_sd({0: a, 1: b}) == pytest.approx(0.01, rel=0.05)
    assert seed_noise_sd({0: a, 1: a}) == 0.0


def test_ceiling_is_one_without_noise_and_what_a_perfect_predictor_scores_with_noise():
    true, costs = _task()
    c0 = simulated_ceiling(true, costs, 0.0)
    assert c0["spearman"] == pytest.approx(1.0) and c0["band_spearman"] == pytest.approx(1.0)
    assert c0["budget_regret"]["mean"] == 0.0
    # Noisy labels of known truth: the perfect predictor's average score matches the simulated ceiling.
    sd = 1.5
    ceil = simulated_ceiling(true, costs, sd, draws=2000)
    rng = np.random.default_rng(7)
    scores = [band_spearman(true, true + rng.normal(0, sd, len(true)), costs) for _ in range(300)]
    assert np.mean(scores) == pytest.approx(ceil["band_spearman"], abs=0.03)
    assert 0.3 < ceil["band_spearman"] < 0.95 and ceil["spearman"] > ceil["band_spearman"]
    assert ceil["budget_regret"]["mean"] > 0
    assert math.isnan(simulated_ceiling(true, costs, math.nan)["band_spearman"])


def test_paired_bootstrap_interval_separates_a_better_method():
    tasks = []
    for s in range(3):
        true, costs = _task(seed=s)
        rng = np.random.default_rng(10 + s)
        tasks.append(BandTask(true=true, costs=costs, exclude=np.zeros(len(true), bool),
                              preds={"good": true + rng.normal(0, 0.5, len(true)), "size": costs.copy()}))
    res = paired_bootstrap(tasks, "good", "size", replicates=300)
    d = res["band_spearman"]
    assert d["lo"] <= d["diff"] <= d["hi"] and d["lo"] > 0.2
    assert res["budget_regret"]["hi"] < 0  # lower regret is better
    same = paired_bootstrap(tasks, "size", "size", replicates=50)
    assert same["spearman"] == {"diff": 0.0, "lo": 0.0, "hi": 0.0}
    # The observed difference equals the difference of the per-task means.
    want = np.mean([band_spearman(t.preds["good"], t.true, t.costs) - band_spearman(t.costs, t.true, t.costs)
                    for t in tasks])
    assert d["diff"] == pytest.approx(want, abs=1e-4)


def test_mean_metrics_average_nested_metrics_and_skip_nan():
    from dass_edge.predictor.evaluation import mean_metrics

    per_task = {"a": {"m": {"spearman": 0.2, "budget_regret": {"q20": 1.0, "mean": 2.0}}},
                "b": {"m": {"spearman": math.nan, "budget_regret": {"q20": 3.0, "mean": math.nan}}}}
    assert mean_metrics(per_task) == {"m": {"spearman": 0.2, "budget_regret": {"q20": 2.0, "mean": 2.0}}}


def test_task_costs_take_latency_from_the_table_covering_the_teacher():
    import glob
    from pathlib import Path

    import torch

    from dass_edge.latency import default_teacher_spec
    from dass_edge.latency.table import LatencyTable
    from dass_edge.predictor.evaluation import task_costs
    from dass_edge.predictor.meta_tasks import MetaTask
    from dass_edge.space import SearchSpace, spec_flops

    shipped = sorted(glob.glob(str(Path(__file__).resolve().parents[1] / "latency_tables" / "cpu_*_r32.json")))
    if not shipped:
        pytest.skip("no shipped CPU latency table in this checkout")
    table = LatencyTable.load(shipped[0])
    spec = default_teacher_spec()
    space = SearchSpace(spec)  # the shipped table covers the fixed-last-stage space
    archs = space.sample_many(6, seed=0)
    n = len(archs)
    task = MetaTask(name="t", heldout=True, teacher_acc=0.9, teacher_embedding=torch.zeros(0),
                    teacher_code=torch.zeros(1), archs=archs, student_embeddings=torch.zeros(n, 0),
                    codes=torch.zeros(n, 1), labels=torch.zeros(n), flops=[spec_flops(space.to_spec(a)) for a in archs],
                    spec=spec)
    costs = task_costs(task, [table])
    assert set(costs) == {"flops", "latency"}
    assert costs["latency"].tolist() == [table.predict(space.to_spec(a))["p50_ms"] for a in archs]
    task.spec = spec.replace(resolution=16)  # no table at 16 px: FLOPs only
    assert set(task_costs(task, [table])) == {"flops"}
    task.spec = None
    assert set(task_costs(task, [table])) == {"flops"}

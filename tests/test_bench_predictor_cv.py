import numpy as np
import pytest

from benchmarks.bench_predictor_cv import cross_validate, paired_delta
from dass_edge.predictor.band_metrics import band_spearman
from tests.test_predictor_baselines import SPEC, synthetic_task

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tasks():
    out = [synthetic_task(f"t{i}", i, n=40, offset=0.02 * i) for i in range(6)]
    for t in out:
        t.spec = SPEC
    out[5].heldout = True  # must never be scored by cross-validation
    return out


def test_cv_scores_every_training_task_once_and_never_the_heldout_one(tasks):
    (rec,) = cross_validate(tasks, "flops", {}, folds=5, members=1, quick=False)
    assert sorted(rec["per_task"]) == [f"t{i}" for i in range(5)]
    t0 = tasks[0]
    want = band_spearman(np.asarray(t0.flops, float), t0.labels.numpy() * 100, np.asarray(t0.flops, float))
    assert rec["per_task"]["t0"]["band_spearman"] == pytest.approx(want, abs=1e-4)
    assert rec["band_spearman"] == pytest.approx(np.mean([d["band_spearman"] for d in rec["per_task"].values()]),
                                                 abs=1e-3)


def test_a_learned_recipe_beats_flops_on_its_own_rule_and_paired_delta_sees_it(tasks):
    (flops,) = cross_validate(tasks, "flops", {}, folds=5, members=1, quick=False)
    opts = {"residual_steps": 300, "features": []}
    (hybrid,) = cross_validate(tasks, "hybrid", opts, folds=5, members=1, quick=False)
    diff, sd = paired_delta(hybrid, flops, "spearman")
    assert diff > 0.1 and sd >= 0
    assert paired_delta(flops, flops, "spearman") == (0.0, 0.0)
    shifted = {**flops, "per_task": {k: {**v, "spearman": v["spearman"] + 0.1} for k, v in flops["per_task"].items()}}
    d, s = paired_delta(shifted, flops, "spearman")
    assert d == pytest.approx(0.1) and s == pytest.approx(0.0, abs=1e-12)
    assert paired_delta({**flops, "folds": 2}, flops, "spearman") is None

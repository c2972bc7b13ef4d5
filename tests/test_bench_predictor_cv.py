import numpy as np
import pytest
import torch

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


def test_an_ensemble_of_flops_and_params_scores_their_hand_computed_rank_average(tasks):
    from benchmarks.bench_predictor_cv import task_metrics
    from dass_edge.predictor.ensemble import combine_scores

    (rec,) = cross_validate(tasks, "ensemble", {"members": ["flops", "params"]}, folds=5, members=1, quick=False)
    t = tasks[2]
    f, p = np.asarray(t.flops, float), np.asarray(t.params, float)
    ranks = (np.argsort(np.argsort(f)) + np.argsort(np.argsort(p))) / (2 * (len(t) - 1))  # no ties here
    assert combine_scores([f, p]) == pytest.approx(ranks)
    want = task_metrics(ranks, t)
    assert rec["per_task"][t.name]["band_spearman"] == pytest.approx(want["band_spearman"], abs=1e-4)
    assert rec["per_task"][t.name]["regret"] == pytest.approx(want["regret"], abs=1e-4)


def test_an_unknown_ensemble_member_is_a_one_line_error(tasks):
    with pytest.raises(SystemExit, match=r"^error: ensemble members \['dsas'\] unknown") as err:
        cross_validate(tasks, "ensemble", {"members": ["flops", "dsas"]}, folds=5, members=1, quick=False)
    assert "\n" not in str(err.value)


def test_dass_members_are_trained_once_per_fold_and_reused_by_ensembles(tasks, tmp_path, monkeypatch):
    import benchmarks.bench_predictor_cv as cv
    import dass_edge.predictor.training as training

    monkeypatch.setattr(cv, "CACHE", tmp_path)
    calls = []
    real = training.meta_train

    def counting(fit, config):
        calls.append(config.seed)
        return real(fit, config)

    monkeypatch.setattr(training, "meta_train", counting)
    opts = {"steps": 3, "tasks_per_step": 2}
    recs = cross_validate(tasks, "dass", opts, folds=2, members=2, quick=False)
    assert calls == [0, 1, 0, 1]  # 2 folds x 2 seeds
    ens = {"members": ["dass", "flops"], "options": {"dass": opts}}
    (rec,) = cross_validate(tasks, "ensemble", ens, folds=2, members=2, quick=False)
    assert calls == [0, 1, 0, 1]  # nothing trained again
    assert len(list(tmp_path.glob("members/*.pt"))) == 4
    dass = recs[0]
    assert dass["recipe"] == "dass" and rec["per_task"].keys() == dass["per_task"].keys()


def test_the_aligned_embedding_option_trains_on_the_aligned_maps(tasks, tmp_path, monkeypatch):
    import benchmarks.bench_predictor_cv as cv
    import dass_edge.predictor.training as training

    monkeypatch.setattr(cv, "CACHE", tmp_path)
    for i, t in enumerate(tasks):
        t.aligned = (torch.full((4, 8, 1, 1), float(i)), torch.full((len(t), 4, 8, 1, 1), float(i)))
    seen, fits = [], []
    real = training.meta_train

    def spying(fit, config):
        fits.append(fit)
        seen.append({float(t.student_embeddings.mean()) for t in fit}
                    | {float(t.teacher_embedding.mean()) for t in fit})
        return real(fit, config)

    monkeypatch.setattr(training, "meta_train", spying)
    opts = {"steps": 2, "tasks_per_step": 2, "use": ["student", "arch", "teacher"], "embedding": "aligned"}
    cross_validate(tasks, "dass", opts, folds=2, members=1, quick=False)
    assert seen == [{1.0, 3.0}, {0.0, 2.0, 4.0}]  # fold 0 fits on t1, t3; fold 1 on t0, t2, t4
    for t in tasks:  # students 1 above their teacher: the difference input is 1 everywhere
        t.aligned = (t.aligned[0], t.aligned[1] + 1.0)
    seen.clear()
    fits.clear()
    cross_validate(tasks, "dass", {**opts, "embedding": "aligned_diff"}, folds=2, members=1, quick=False)
    assert [{float(t.student_embeddings.mean()) for t in fit} for fit in fits] == [{1.0}, {1.0}]
    with pytest.raises(SystemExit, match=r"^error: unknown embedding 'raw'"):
        cross_validate(tasks, "dass", {**opts, "embedding": "raw"}, folds=2, members=1, quick=False)


def _profiled(tasks):
    """The training tasks with distinct probe profiles (the hybrid's modulators)."""
    out = [t for t in tasks if not t.heldout]
    for i, t in enumerate(out):
        t.probe_profile = (0.3 + 0.05 * i, 0.5 + 0.04 * i, 0.7 - 0.03 * i, 0.9)
    return out


def test_task_kernel_with_a_wide_bandwidth_is_the_plain_hybrid(tasks):
    from benchmarks.bench_predictor_cv import task_kernel_hybrid
    from dass_edge.predictor.hybrid import HybridPredictor

    train = _profiled(tasks)
    settings = {"alpha": 10.0, "residual_steps": 0, "probe": True, "probe_size": True}
    plain = HybridPredictor(**settings).fit(train[:4])
    wide = task_kernel_hybrid(1e6, **settings).fit(train[:4])
    assert wide.score(train[4]) == pytest.approx(plain.score(train[4]), rel=1e-6, abs=1e-9)


def test_task_kernel_with_a_narrow_bandwidth_is_the_nearest_task_own_fit(tasks):
    """A task whose modulators equal one training task's gets that task's own ridge (its weight: all rows)."""
    from benchmarks.bench_predictor_cv import task_kernel_hybrid
    from dass_edge.predictor.hybrid import HybridPredictor, standardized

    train = _profiled(tasks)
    settings = {"alpha": 10.0, "residual_steps": 0, "probe": True, "probe_size": True}
    model = task_kernel_hybrid(0.01, **settings).fit(train[:4])
    twin = train[4]
    twin.probe_profile = train[1].probe_profile
    z1 = (model._features(train[1], None) - model.mean) / model.scale
    y1 = standardized(train[1].labels.numpy().astype(float))
    w = sum(len(t) for t in train[:4]) / len(train[1])
    coef = np.linalg.solve(w * z1.T @ z1 + 10.0 * np.eye(z1.shape[1]), w * z1.T @ y1)
    want = (model._features(twin, None) - model.mean) / model.scale @ coef
    assert model.score(twin) == pytest.approx(want, rel=1e-6, abs=1e-9)
    assert not np.allclose(model.score(twin), HybridPredictor(**settings).fit(train[:4]).score(twin))


def test_task_bootstrap_of_a_paired_shift_is_the_shift_and_brackets_a_mixed_difference():
    from benchmarks.bench_predictor_cv import task_bootstrap

    ref = {"per_task": {f"t{i}": {"regret": float(i)} for i in range(8)}}
    shifted = {"per_task": {k: {"regret": v["regret"] + 0.5} for k, v in ref["per_task"].items()}}
    assert task_bootstrap(shifted, ref, "regret") == pytest.approx((0.5, 0.5, 0.5))
    mixed = {"per_task": {k: {"regret": v["regret"] + (1.0 if i % 2 else -1.0)}
                          for i, (k, v) in enumerate(ref["per_task"].items())}}
    mean, low, high = task_bootstrap(mixed, ref, "regret")
    assert mean == pytest.approx(0.0) and low < 0 < high


def test_new_tasks_are_scored_by_a_fit_on_the_other_training_tasks_only(tasks):
    from benchmarks.bench_predictor_cv import heldout, run_recipe, task_metrics

    opts = {"residual_steps": 0, "features": [], "alpha": 1.0}
    (rec,) = heldout(tasks, "linear", opts, 1, targets=["t1", "t3"])
    assert sorted(rec["per_task"]) == ["t1", "t3"]
    fit = [tasks[0], tasks[2], tasks[4]]  # neither the new tasks nor the held-out t5
    want = run_recipe("linear", opts, fit, [tasks[1]], 1, False)["linear"]["t1"]
    assert rec["per_task"]["t1"]["regret"] == pytest.approx(task_metrics(want, tasks[1])["regret"], abs=1e-4)
    with pytest.raises(SystemExit, match="t5: not meta-training tasks"):
        heldout(tasks, "flops", {}, 1, targets=["t5"])


def test_fragment_task_set_line_follows_the_databases_the_command_read():
    """A rerun on another set must not be labelled with how set 5 was cut."""
    from benchmarks.common import SET5, SET6, task_set_text

    assert task_set_text("python b.py --db shipped --db /work/s10/set5.jsonl --draws 20") == SET5
    assert task_set_text("python b.py --db shipped --db /work/s12/set6.jsonl", SET6) == SET6
    other = task_set_text("python b.py --db shipped --db /work/s24/set15.jsonl")
    assert other == "Task set: the meta-training tasks of `shipped` + `/work/s24/set15.jsonl`.\n\n"
    assert task_set_text("python b.py --report", SET6) == SET6  # no --db: the records' own set

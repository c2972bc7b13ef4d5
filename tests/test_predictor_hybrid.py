import numpy as np
import pytest
import torch

from dass_edge.errors import DassEdgeError
from dass_edge.predictor.hybrid import HybridPredictor, standardized
from dass_edge.predictor.metrics import rank_metrics
from tests.test_predictor_baselines import SPEC, synthetic_task

pytestmark = pytest.mark.usefixtures("one_thread")


def _tasks():
    train = [synthetic_task(f"train{i}", i, offset=0.05 * (i - 2)) for i in range(4)]
    for t in train:
        t.spec = SPEC
    test = synthetic_task("test", 99, offset=0.03)
    test.spec = SPEC
    return train, test


def test_standardized_has_zero_mean_unit_sd_and_survives_constant_labels():
    z = standardized(np.array([1.0, 2.0, 3.0, 6.0]))
    assert abs(z.mean()) < 1e-12 and abs(z.std() - 1.0) < 1e-12
    assert np.all(standardized(np.full(4, 0.7)) == 0.0)


def test_linear_part_reads_an_extra_feature_that_carries_the_order():
    train, test = _tasks()
    # An extra feature equal to the per-task standardized labels: the linear part must rank by it.
    extra = {t.name: standardized(t.labels.numpy())[:, None] for t in train}
    model = HybridPredictor(residual_steps=0, alpha=1e-3).fit(train, extra)
    rho = rank_metrics(model.score(test, test.labels.numpy()[:, None]), test.labels.numpy())["spearman"]
    assert rho > 0.999


def test_residual_learns_what_the_size_features_miss_and_is_seeded():
    train, test = _tasks()  # labels are linear in the one-hot code, which the size features only partly see
    truth = test.labels.numpy()
    linear = HybridPredictor(residual_steps=0).fit(train)
    hybrid = HybridPredictor(residual_steps=400, seed=0).fit(train)
    rho_linear = rank_metrics(linear.score(test), truth)["spearman"]
    rho_hybrid = rank_metrics(hybrid.score(test), truth)["spearman"]
    assert rho_hybrid > rho_linear + 0.05 and rho_hybrid > 0.9
    again = HybridPredictor(residual_steps=400, seed=0).fit(train)
    np.testing.assert_array_equal(again.score(test), hybrid.score(test))


def test_unfitted_or_empty_fit_is_refused():
    _, test = _tasks()
    with pytest.raises(DassEdgeError, match="not fitted"):
        HybridPredictor().score(test)
    with pytest.raises(DassEdgeError, match="2 or more students"):
        HybridPredictor().fit([])


def test_within_band_shape_weights_ignore_anything_that_moves_whole_bands():
    """The shape weights come from contrasts inside equal-FLOPs bands: adding a constant to each band's labels
    (say, something no feature sees that differs between cost levels) leaves their direction unchanged, while a
    whole-range fit's weights move with it."""
    import torch

    from dass_edge.predictor.band_metrics import cost_bands

    task = synthetic_task("train0", 0, n=64)
    task.spec = SPEC
    shifted = synthetic_task("train0", 0, n=64)
    shifted.spec = SPEC
    labels = shifted.labels.numpy().astype(float).copy()
    rng = np.random.default_rng(0)
    for band in cost_bands(np.asarray(task.flops, dtype=float), 8, min_students=2):
        labels[band] += rng.normal(0.0, 0.05)
    shifted.labels = torch.as_tensor(labels)

    def cosine(a, b):
        return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))

    within = [HybridPredictor(residual_steps=0, within_band=8).fit([t]) for t in (task, shifted)]
    shape = ~within[0]._size_columns(len(within[0].coef))
    assert shape.sum() == len(shape) - 2
    assert cosine(within[0].coef[shape], within[1].coef[shape]) > 0.9999
    whole = [HybridPredictor(residual_steps=0).fit([t]) for t in (task, shifted)]
    assert cosine(whole[0].coef[shape], whole[1].coef[shape]) < 0.99

def test_within_band_setting_survives_saving_and_bad_values_are_refused():
    train, test = _tasks()
    model = HybridPredictor(residual_steps=0, within_band=8).fit(train)
    tensors, config = model.to_state()
    assert config["within_band"] == 8
    again = HybridPredictor.from_state(tensors, config)
    assert again.within_band == 8
    np.testing.assert_allclose(again.score(test), model.score(test))
    with pytest.raises(DassEdgeError, match="within_band"):
        HybridPredictor(within_band=1)


def test_partial_size_keeps_leftover_flops_spread_out_of_the_shape_weights():
    """Labels that are pure size (log FLOPs): bands of 8 consecutive students still span some FLOPs, and without
    the size terms in the within-band fit that spread lands on params, depth and width; with them (partial_size)
    the shape weights stay near zero and the ranking is by size."""
    import torch

    task = synthetic_task("train0", 0, n=64)
    task.spec = SPEC
    task.labels = torch.as_tensor(np.log(np.asarray(task.flops, dtype=float)))
    plain = HybridPredictor(residual_steps=0, alpha=1e-3, within_band=8).fit([task])
    partial = HybridPredictor(residual_steps=0, alpha=1e-3, within_band=8, partial_size=True).fit([task])
    shape = ~plain._size_columns(len(plain.coef))
    assert np.abs(partial.coef[shape]).max() < 0.05 < np.abs(plain.coef[shape]).max()
    assert rank_metrics(partial.score(task), task.labels.numpy())["spearman"] > 0.999
    tensors, config = partial.to_state()
    assert config["partial_size"] is True and HybridPredictor.from_state(tensors, config).partial_size
    with pytest.raises(DassEdgeError, match="partial_size needs within_band"):
        HybridPredictor(partial_size=True)


def test_free_size_keeps_the_size_trend_out_of_the_penalty():
    """With a penalty that crushes every weight, the plain fit scores every student nearly alike while ``free_size``
    still carries the size trend (the first two columns), and nothing but those two columns escapes the penalty."""
    train, _ = _tasks()
    for t in train:  # labels that follow log FLOPs exactly, so the size trend is all there is to learn
        t.labels = torch.as_tensor(np.log(np.asarray(t.flops, dtype=float)), dtype=t.labels.dtype)
    crushed = HybridPredictor(residual_steps=0, alpha=1e9).fit(train)
    free = HybridPredictor(residual_steps=0, alpha=1e9, free_size=True).fit(train)
    assert np.abs(crushed.coef).max() < 1e-3
    assert np.abs(free.coef[:2]).max() > 0.1 and np.abs(free.coef[2:]).max() < 1e-3
    rho = rank_metrics(free.score(train[0]), train[0].labels.numpy())["spearman"]
    assert rho > 0.99
    tensors, config = free.to_state()  # a saved predictor remembers it (search rebuilds the same model)
    assert config["free_size"] is True and HybridPredictor.from_state(tensors, config).free_size
    with pytest.raises(DassEdgeError, match="within_band"):
        HybridPredictor(free_size=True, within_band=8)


def test_single_blocks_fits_the_step_from_one_block_to_two_that_a_linear_depth_term_cannot():
    """Labels that drop only where the last stage has one block (depth 2 and 3 alike): with ``single_blocks`` the
    linear part ranks a new task's students almost perfectly (rho > 0.98), without it the depth term cannot (about
    0.84); a saved predictor remembers the setting, and one saved without it keeps its narrower design."""
    from dass_edge.models import model_spec
    from dass_edge.predictor.hybrid import single_block_indicators
    from dass_edge.predictor.meta_tasks import unlabelled_task
    from dass_edge.space import SearchSpace

    spec = model_spec("resnet_edge_d3", num_classes=10, resolution=16)  # 3 blocks a stage: depth 1, 2 or 3
    space = SearchSpace(spec, fixed_last_stage=False)

    def task(name: str, seed: int):
        t = unlabelled_task(name, space.sample_many(80, seed=seed), spec)
        step = -single_block_indicators(t)[:, 3]
        t.labels = torch.as_tensor(step + 0.3 * np.log(np.asarray(t.flops, dtype=float)))
        return t

    train, test = [task(f"train{i}", i) for i in range(4)], task("test", 99)
    truth = test.labels.numpy()
    assert set(np.unique(single_block_indicators(test)[:, 3])) == {0.0, 1.0}
    plain = HybridPredictor(residual_steps=0, alpha=1e-3).fit(train)
    stepped = HybridPredictor(residual_steps=0, alpha=1e-3, single_blocks=True).fit(train)
    rho_plain = rank_metrics(plain.score(test), truth)["spearman"]
    rho_stepped = rank_metrics(stepped.score(test), truth)["spearman"]
    assert rho_stepped > 0.98 and rho_stepped > rho_plain + 0.1, (rho_plain, rho_stepped)
    tensors, config = stepped.to_state()
    assert config["single_blocks"] is True and len(stepped.coef) == len(plain.coef) + 4
    np.testing.assert_allclose(HybridPredictor.from_state(tensors, config).score(test), stepped.score(test))
    tensors, config = plain.to_state()
    config.pop("single_blocks")  # a predictor saved before the setting existed
    np.testing.assert_allclose(HybridPredictor.from_state(tensors, config).score(test), plain.score(test))

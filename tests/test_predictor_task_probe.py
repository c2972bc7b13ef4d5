"""The task probe profile and the probe-modulated hybrid predictor (predictor v2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dass_edge.data import load_task
from dass_edge.errors import DassEdgeError
from dass_edge.models import model_spec
from dass_edge.models.checkpoint import load_checkpoint
from dass_edge.predictor.hybrid import HybridPredictor
from dass_edge.predictor.meta_tasks import MetaTask, teacher_task, unlabelled_task
from dass_edge.predictor.metrics import rank_metrics
from dass_edge.predictor.task_probe import (
    colour_histograms,
    colour_probe_accuracy,
    probe_ratios,
    stage_probe_accuracies,
)
from dass_edge.resources import asset_path
from dass_edge.space import SearchSpace, spec_flops, spec_params

pytestmark = pytest.mark.usefixtures("one_thread")

SPEC = model_spec("resnet_edge_s", num_classes=10, resolution=16)
SPACE = SearchSpace(SPEC, fixed_last_stage=False)


def _task(name: str, seed: int, early: float, n: int = 60) -> MetaTask:
    """Students whose order inside equal-size groups depends on the task: with ``early`` (the stage-2 over
    stage-4 probe ratio) high, a wide first stage wins; with it low, parameters win (the glyph/texture flip)."""
    archs = SPACE.sample_many(n, seed=seed)
    specs = [SPACE.to_spec(a) for a in archs]
    flops = np.array([spec_flops(s) for s in specs], float)
    params = np.array([spec_params(s) for s in specs], float)
    w1 = np.array([np.mean(a.widths[0]) / SPEC.widths[0] for a in archs])
    sign = 1.0 if early > 0.7 else -1.0
    labels = 0.03 * np.log(flops) + 0.02 * sign * (w1 - w1.mean()) / w1.std() \
        - 0.02 * sign * (np.log(params) - np.log(params).mean()) / np.log(params).std()
    task = unlabelled_task(name, archs, SPEC, probe_profile=(0.2, early * 0.9, 0.85, 0.9))
    task.labels = torch.tensor(labels)
    return task


def test_probe_ratios_divide_by_the_last_stage_and_guard_a_chance_teacher():
    assert np.allclose(probe_ratios((0.2, 0.45, 0.8, 0.9)), [0.2 / 0.9, 0.5, 0.8 / 0.9])
    assert np.all(np.isfinite(probe_ratios((0.0, 0.0, 0.0, 0.0))))
    assert np.all(probe_ratios((0.5, 0.5, 0.5, 0.0)) <= 1.5)


def test_stage_probe_accuracies_are_deterministic_and_rise_through_a_trained_teacher():
    teacher, meta = load_checkpoint(asset_path("demo_teacher.safetensors"))
    data = load_task(meta["task"], resolution=teacher.spec.resolution)
    a = stage_probe_accuracies(teacher, data, train_images=300, val_images=200)
    assert a == stage_probe_accuracies(teacher, data, train_images=300, val_images=200)
    assert len(a) == 4 and all(0.0 <= v <= 1.0 for v in a)
    # The demo teacher reads its glyphs in the last stages: the first stage's probe is near chance, the
    # last one's far above it (measured 0.13 / 0.39 / 0.94 / 1.00 with the default sizes).
    assert a[3] > 0.8 and a[0] < 0.5 and a[3] > a[0] + 0.3
    # No validation image (a tiny user folder): unknown, not a crash; the hybrid then reads the average task.
    assert all(np.isnan(v) for v in stage_probe_accuracies(teacher, data, train_images=300, val_images=0))


def test_the_probe_lets_one_model_rank_two_kinds_of_task_the_size_features_cannot():
    train = [_task(f"t{i}", i, early) for i, early in enumerate((0.5, 0.55, 0.6, 0.85, 0.9, 0.95))]
    tests = [_task("late", 50, 0.52), _task("early", 51, 0.92)]
    plain = HybridPredictor(residual_steps=0, alpha=1.0).fit(train)
    probed = HybridPredictor(residual_steps=0, alpha=1.0, probe=True).fit(train)
    for t in tests:
        truth = t.labels.numpy()
        rho_plain = rank_metrics(plain.score(t), truth)["spearman"]
        rho_probed = rank_metrics(probed.score(t), truth)["spearman"]
        assert rho_probed > 0.95 and rho_probed > rho_plain + 0.1, (t.name, rho_plain, rho_probed)


def test_ratios_outside_the_training_range_are_clipped_not_extrapolated():
    train = [_task(f"t{i}", i, early) for i, early in enumerate((0.5, 0.6, 0.85, 0.9))]
    model = HybridPredictor(residual_steps=0, probe=True).fit(train)
    edge, beyond = _task("edge", 7, 0.9), _task("beyond", 7, 0.9)
    beyond.probe_profile = (0.2, 0.9 * 1.4, 0.85, 0.9)  # stage 2 above stage 4: outside every training task
    edge.probe_profile = (0.2, 0.9 * float(model.probe_range[1][1]), 0.85, 0.9)
    np.testing.assert_allclose(model.score(beyond), model.score(edge))
    free = HybridPredictor(residual_steps=0, probe=True, probe_clip=False).fit(train)
    assert not np.allclose(free.score(beyond), free.score(edge))


def test_state_round_trip_gives_the_same_scores_and_a_missing_profile_is_a_clear_error():
    train = [_task(f"t{i}", i, early) for i, early in enumerate((0.5, 0.6, 0.85, 0.9))]
    test = _task("x", 9, 0.7)
    for settings in ({"residual_steps": 0, "probe": True}, {"residual_steps": 50, "probe": True, "probe_size": True}):
        model = HybridPredictor(**settings).fit(train)
        tensors, config = model.to_state()
        again = HybridPredictor.from_state(tensors, config)
        np.testing.assert_allclose(again.score(test), model.score(test), rtol=1e-6, atol=1e-9)
    test.probe_profile = None
    with pytest.raises(DassEdgeError, match="probe profile"):
        model.score(test)


def test_teacher_task_is_the_teacher_arch_alone_with_the_tasks_profile():
    task = _task("t", 0, 0.6)
    anchor = teacher_task(task)
    assert len(anchor) == 1 and anchor.archs[0] == SPACE.teacher_arch()
    assert anchor.flops == [spec_flops(SPEC)] and anchor.probe_profile == task.probe_profile


def test_k_shot_adaptation_follows_a_task_the_prior_gets_wrong_and_a_strong_prior_holds():
    from dass_edge.predictor.training import predict_task

    train = [_task(f"t{i}", i, early) for i, early in enumerate((0.5, 0.55, 0.6))]  # "late" tasks only
    model = HybridPredictor(residual_steps=0, alpha=1.0, probe=True).fit(train)
    odd = _task("odd", 40, 0.92)  # an "early" task: the order inside sizes is the other way round
    support, rest = np.arange(30), np.arange(30, len(odd))
    truth = odd.labels.numpy()[rest]
    before = rank_metrics(model.score(odd)[rest], truth)["spearman"]
    after = rank_metrics(model.adapted(odd, support).score(odd)[rest], truth)["spearman"]
    assert before < -0.5 and after > 0.6, (before, after)  # measured -0.76 -> 0.76
    held = model.adapted(odd, support, strength=1e9).score(odd)
    np.testing.assert_allclose(held, model.score(odd), rtol=1e-5, atol=1e-6)
    with pytest.raises(DassEdgeError, match="2 or more"):
        model.adapted(odd, [3])
    # predict_task draws the same K students for the same seed, and a different set for another seed
    a, b = predict_task(model, odd, k_shot=10, k_seed=0), predict_task(model, odd, k_shot=10, k_seed=0)
    assert torch.equal(a, b) and not torch.equal(a, predict_task(model, odd, k_shot=10, k_seed=1))


def test_an_unknown_profile_reads_as_the_average_task_and_never_gives_nan():
    train = [_task(f"t{i}", i, early) for i, early in enumerate((0.5, 0.6, 0.85, 0.9))]
    model = HybridPredictor(residual_steps=0, probe=True).fit(train)
    unknown, average = _task("u", 5, 0.7), _task("u", 5, 0.7)
    unknown.probe_profile = (float("nan"),) * 4
    center = model.probe_center * 0.9  # ratios of the average training task, as accuracies over a 0.9 stage 4
    average.probe_profile = (*center, 0.9)
    scores = model.score(unknown)
    assert np.all(np.isfinite(scores))
    np.testing.assert_allclose(scores, model.score(average), rtol=1e-6, atol=1e-9)


def test_a_saved_hybrid_whose_weights_do_not_match_its_config_is_refused(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from dass_edge.predictor.store import load_predictor, save_predictor

    train = [_task(f"t{i}", i, early) for i, early in enumerate((0.5, 0.9))]
    path = save_predictor(tmp_path / "p.safetensors", [HybridPredictor(residual_steps=0, probe=True).fit(train)],
                          {"train": {}})
    with safe_open(str(path), "pt") as f:  # keep the metadata, cut one weight
        meta = f.metadata()
    tensors = load_file(str(path))
    tensors["m0.coef"] = tensors["m0.coef"][:-1].clone()
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(DassEdgeError, match="damaged"):
        load_predictor(path)


def _task_of(spec, name: str, seed: int, sign: float, n: int = 60) -> MetaTask:
    """Like :func:`_task`, with the teacher ``spec`` given and the within-size order's sign set directly
    (every task has the same probe profile, so only a teacher descriptor can tell them apart)."""
    space = SearchSpace(spec, fixed_last_stage=False)
    archs = space.sample_many(n, seed=seed)
    specs = [space.to_spec(a) for a in archs]
    flops = np.array([spec_flops(s) for s in specs], float)
    params = np.array([spec_params(s) for s in specs], float)
    w1 = np.array([np.mean(a.widths[0]) / spec.widths[0] for a in archs])
    labels = 0.03 * np.log(flops) + 0.02 * sign * (w1 - w1.mean()) / w1.std() \
        - 0.02 * sign * (np.log(params) - np.log(params).mean()) / np.log(params).std()
    task = unlabelled_task(name, archs, spec, probe_profile=(0.2, 0.6, 0.85, 0.9))
    task.labels = torch.tensor(labels)
    return task


def _assert_descriptor_separates(train: list, tests: list, descriptor: str) -> None:
    """With ``descriptor`` the hybrid ranks every test task's students (> 0.95 and 0.1 over the probe alone),
    and the fitted model survives saving."""
    probed = HybridPredictor(residual_steps=0, alpha=1.0, probe=True).fit(train)
    described = HybridPredictor(residual_steps=0, alpha=1.0, probe=True, descriptors=(descriptor,)).fit(train)
    for t in tests:
        truth = t.labels.numpy()
        rho_probed = rank_metrics(probed.score(t), truth)["spearman"]
        rho_described = rank_metrics(described.score(t), truth)["spearman"]
        assert rho_described > 0.95 and rho_described > rho_probed + 0.1, (t.name, rho_probed, rho_described)
    tensors, config = described.to_state()
    assert config["descriptors"] == [descriptor]
    for t in tests:
        np.testing.assert_allclose(HybridPredictor.from_state(tensors, config).score(t), described.score(t))


def test_a_teacher_descriptor_separates_tasks_the_probe_profile_cannot():
    imagenet = model_spec("resnet18_in64", num_classes=10, resolution=64)
    train = [_task_of(SPEC, f"s{i}", i, -1.0) for i in range(3)]
    train += [_task_of(imagenet, f"i{i}", i, 1.0) for i in range(3)]
    tests = [_task_of(SPEC, "small", 50, -1.0), _task_of(imagenet, "stem", 51, 1.0)]
    _assert_descriptor_separates(train, tests, "stem")
    with pytest.raises(DassEdgeError, match="unknown teacher descriptor"):
        HybridPredictor(descriptors=("texture",))


def test_the_level_descriptor_separates_tasks_whose_probe_ratios_are_equal():
    """Two families of tasks with the same probe ratios but teachers that reach different stage-4 probe
    accuracies, and opposite within-size orders: only the level (the ratios divide it out) tells them apart."""
    easy, hard = (0.2, 0.6, 0.85, 0.9), tuple(0.8 * a for a in (0.2, 0.6, 0.85, 0.9))

    def task(name, seed, sign, profile):
        t = _task_of(SPEC, name, seed, sign)
        t.probe_profile = profile
        return t

    train = [task(f"e{i}", i, -1.0, easy) for i in range(3)] + [task(f"h{i}", 10 + i, 1.0, hard) for i in range(3)]
    tests = [task("easy", 50, -1.0, easy), task("hard", 51, 1.0, hard)]
    _assert_descriptor_separates(train, tests, "level")


def test_the_map_descriptor_reads_the_last_stage_map_side_and_separates_16_from_32_px():
    """16 px small stem and 64 px ImageNet stem end on 2x2 maps (0), 32 px small stem on 4x4 (1), whatever the
    last stage's depth; small-stem tasks at 16 and 32 px with opposite within-size orders are told apart."""
    from types import SimpleNamespace

    from dass_edge.predictor.hybrid import TEACHER_DESCRIPTORS

    at32 = model_spec("resnet_edge_s", num_classes=10, resolution=32)
    shallow = SearchSpace(at32, fixed_last_stage=False).to_spec(SearchSpace(at32).smallest_arch())
    values = {name: TEACHER_DESCRIPTORS["map"](SimpleNamespace(spec=spec))
              for name, spec in [("16", SPEC), ("32", at32), ("32 one block", shallow),
                                 ("64 imagenet", model_spec("resnet18_in64", num_classes=10, resolution=64))]}
    assert values == {"16": 0.0, "32": 1.0, "32 one block": 1.0, "64 imagenet": 0.0}
    train = [_task_of(SPEC, f"a{i}", i, -1.0) for i in range(3)] + [_task_of(at32, f"b{i}", i, 1.0) for i in range(3)]
    _assert_descriptor_separates(train, [_task_of(SPEC, "16", 50, -1.0), _task_of(at32, "32", 51, 1.0)], "map")


def _colour_task(class_colours: bool, n: int = 30, classes: int = 4, resolution: int = 16):
    """Images of ``classes`` classes whose class is drawn as a bar's position; with ``class_colours`` every class
    also has a colour of its own, without it each image's colours are random (the glyph tasks' rendering)."""
    from dass_edge.data.task import Split, TaskData

    g = np.random.default_rng(0)
    palette = g.integers(0, 256, (classes, 2, 3))

    def split(count: int) -> Split:
        y = np.repeat(np.arange(classes), count)
        x = np.empty((len(y), 3, resolution, resolution), np.uint8)
        for i, k in enumerate(y):
            bg, fg = palette[k] if class_colours else g.integers(0, 256, (2, 3))
            x[i] = bg[:, None, None]
            x[i, :, 4 * k:4 * k + 3, :] = fg[:, None, None]
        return Split(torch.from_numpy(x), torch.from_numpy(y))

    names = tuple(str(k) for k in range(classes))
    return TaskData("colours" if class_colours else "random", names, resolution, split(n), split(n // 2),
                    split(n // 2))


def test_the_colour_probe_reads_colours_that_belong_to_classes_and_ignores_layout():
    own, random = _colour_task(True), _colour_task(False)
    assert colour_probe_accuracy(own) == 1.0
    assert colour_probe_accuracy(random) < 0.6  # chance 0.25; the bars' shapes are invisible to a histogram
    assert colour_probe_accuracy(own) == colour_probe_accuracy(own)  # the same images every time
    # Histograms are fractions of the pixels: repeating every pixel (the frozen tasks above 16 px) changes nothing.
    x = own.train.images[:5]
    doubled = x.repeat_interleave(2, 2).repeat_interleave(2, 3)
    np.testing.assert_allclose(colour_histograms(x), colour_histograms(doubled))
    # Each row is its own image's histogram, whatever else is in the batch; an empty batch is an empty table.
    np.testing.assert_allclose(colour_histograms(x)[3], colour_histograms(x[3:4])[0])
    assert colour_histograms(x).sum(1) == pytest.approx(np.ones(5))
    assert colour_histograms(x[:0]).shape == (0, 64)
    assert np.isnan(colour_probe_accuracy(own, val_images=0))


def test_the_colour_descriptor_is_log_accuracy_over_chance_and_separates_tasks():
    from types import SimpleNamespace

    from dass_edge.predictor.hybrid import TEACHER_DESCRIPTORS

    colour = TEACHER_DESCRIPTORS["colour"]
    spec = model_spec("resnet_edge_s", num_classes=40, resolution=16)
    assert colour(SimpleNamespace(name="t", colour_probe=0.025, spec=spec)) == pytest.approx(0.0)
    assert colour(SimpleNamespace(name="t", colour_probe=0.1, spec=spec)) == pytest.approx(np.log(4.0))
    assert colour(SimpleNamespace(name="t", colour_probe=0.0, spec=spec)) == pytest.approx(np.log(0.5))  # floor
    assert np.isnan(colour(SimpleNamespace(name="t", colour_probe=float("nan"), spec=spec)))
    with pytest.raises(DassEdgeError, match="no colour probe"):
        colour(SimpleNamespace(name="t", colour_probe=None, spec=spec))

    def task(name, seed, sign, probe):
        t = _task_of(SPEC, name, seed, sign)
        t.colour_probe = probe
        return t

    train = [task(f"g{i}", i, -1.0, 0.1) for i in range(3)] + [task(f"e{i}", 10 + i, 1.0, 0.5) for i in range(3)]
    _assert_descriptor_separates(train, [task("glyph", 50, -1.0, 0.1), task("emoji", 51, 1.0, 0.5)], "colour")
    assert teacher_task(train[0]).colour_probe == 0.1  # the calibration anchor keeps it

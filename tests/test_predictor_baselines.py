import math
from pathlib import Path

import numpy as np
import pytest
import torch

from dass_edge.data import Split
from dass_edge.errors import DassEdgeError
from dass_edge.models import model_spec
from dass_edge.predictor.baselines import (
    BASELINES,
    MIN_CEILING_STUDENTS,
    TaskContext,
    context_from_split,
    create_baseline,
    list_baselines,
    register_baseline,
    seed_ceiling,
    task_context,
)
from dass_edge.predictor.encoding import encode_relative
from dass_edge.predictor.meta_tasks import MetaTask
from dass_edge.predictor.metrics import rank_metrics
from dass_edge.predictor.plots import plot_predicted_vs_true
from dass_edge.space import SearchSpace, spec_flops, spec_params

NAMES = {"params", "flops", "synflow", "snip", "grad_norm", "jacov", "arch_only", "metad2a", "ridge", "diswot"}
SPEC = model_spec("resnet_edge_s", num_classes=10, resolution=16)
SPACE = SearchSpace(SPEC, fixed_last_stage=False)
# The hidden rule of the synthetic tasks: accuracy is a fixed linear function of the arch code.
WEIGHTS = torch.randn(len(encode_relative(SPACE.teacher_arch(), SPEC)), generator=torch.Generator().manual_seed(7))


def synthetic_task(name: str, seed: int, n: int = 60, offset: float = 0.0, seed_noise: float | None = 0.0) -> MetaTask:
    """A MetaTask whose labels are ``0.6 + offset + 0.01 * code @ WEIGHTS`` (random, meaningless embeddings)."""
    g = torch.Generator().manual_seed(seed)
    archs = SPACE.sample_many(n, seed=seed)
    codes = torch.tensor([encode_relative(a, SPEC) for a in archs])
    labels = 0.6 + offset + 0.01 * codes @ WEIGHTS
    seeds = {0: labels.clone()} if seed_noise is None else {0: labels.clone(), 1: labels + seed_noise}
    return MetaTask(
        name=name, heldout=False, teacher_acc=0.9, teacher_embedding=torch.randn(4, 8, 2, 2, generator=g),
        teacher_code=codes[0], archs=archs, student_embeddings=torch.randn(n, 4, 8, 2, 2, generator=g), codes=codes,
        labels=labels, seed_labels=seeds, params=[spec_params(SPACE.to_spec(a)) for a in archs],
        flops=[spec_flops(SPACE.to_spec(a)) for a in archs],
    )


def synthetic_context(name: str, seed: int, teacher=None) -> TaskContext:
    g = torch.Generator().manual_seed(seed)
    images = (torch.rand(64, 3, 16, 16, generator=g) * (80 + 40 * seed)).to(torch.uint8)
    return context_from_split(name, Split(images, torch.randint(0, 5, (64,), generator=g)), teacher)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def meta():
    train = [synthetic_task(f"train{i}", i, offset=0.05 * (i - 2)) for i in range(5)]
    test = synthetic_task("test", 99, offset=0.03)
    contexts = {t.name: synthetic_context(t.name, i) for i, t in enumerate([*train, test])}
    return train, test, contexts


def test_registry_holds_exactly_the_baselines():
    assert set(list_baselines()) == NAMES == set(BASELINES)
    assert all(create_baseline(n).name == n for n in NAMES)
    with pytest.raises(DassEdgeError, match="unknown baseline"):
        create_baseline("oracle")
    with pytest.raises(ValueError, match="twice"):

        @register_baseline
        def params():  # noqa: F811 - the point: a second "params"
            raise AssertionError

    assert set(BASELINES) == NAMES


def test_params_and_flops_reproduce_the_task_attributes(meta):
    _, test, _ = meta
    assert np.array_equal(create_baseline("params").fit([]).score(test, None), np.asarray(test.params, float))
    assert np.array_equal(np.argsort(create_baseline("flops").score(test)), np.argsort(test.flops, kind="stable"))


@pytest.mark.parametrize("name", ["arch_only", "metad2a"])
def test_learned_baselines_learn_the_rule_and_are_seeded(meta, name):
    train, test, contexts = meta
    a = create_baseline(name, seed=3).fit(train, contexts)
    scores = a.score(test, contexts[test.name])
    assert scores.shape == (len(test),)
    assert rank_metrics(scores, test.labels.numpy())["spearman"] > 0.8
    b = create_baseline(name, seed=3).fit(train, contexts)
    assert np.array_equal(scores, b.score(test, contexts[test.name]))


@pytest.mark.parametrize("name", ["arch_only", "metad2a"])
def test_learned_baselines_refuse_to_score_unfitted_or_fit_on_nothing(meta, name):
    _, test, contexts = meta
    b = create_baseline(name)
    assert b.trainable and not create_baseline("params").trainable
    with pytest.raises(DassEdgeError, match="not fitted"):
        b.score(test, contexts[test.name])
    with pytest.raises(DassEdgeError, match="at least one"):
        b.fit([])


def test_proxy_baselines_score_remapped_students_deterministically(small_teacher):
    task = synthetic_task("tiny", 5, n=4)
    g = torch.Generator().manual_seed(0)
    split = Split(torch.randint(0, 256, (16, 3, 32, 32), generator=g, dtype=torch.uint8),
                  torch.randint(0, 10, (16,), generator=g))
    ctx = context_from_split("tiny", split, small_teacher, batch_size=8)
    assert ctx.x.shape == (8, 3, 32, 32) and ctx.x.dtype == torch.float32
    for name in ("synflow", "snip", "grad_norm", "jacov"):
        b = create_baseline(name)
        first = b.score(task, ctx)
        torch.manual_seed(1234)  # unrelated global RNG state must not matter
        assert first.shape == (4,) and np.isfinite(first).all(), name
        assert np.array_equal(first, b.score(task, ctx)), name
    with pytest.raises(DassEdgeError, match="teacher"):
        create_baseline("snip").score(task, None)


def test_context_batch_is_fixed_by_its_seed():
    split = Split(torch.arange(100, dtype=torch.uint8).view(100, 1, 1, 1).expand(100, 3, 2, 2), torch.arange(100))
    a, b = context_from_split("t", split, seed=4), context_from_split("t", split, seed=4)
    assert torch.equal(a.targets, b.targets) and len(a.targets) == 64
    assert not torch.equal(a.targets, context_from_split("t", split, seed=5).targets)
    with pytest.raises(DassEdgeError, match="no teacher"):
        _ = a.x


def test_ceiling_of_identical_seeds_is_perfect_and_needs_enough_pairs():
    same = synthetic_task("same", 1, n=20, seed_noise=0.0)
    c = seed_ceiling(same)
    assert c["spearman"] == pytest.approx(1.0) and c["kendall"] == pytest.approx(1.0)
    assert c["regret"] == 0.0 and c["top5"] == 1.0
    few = synthetic_task("few", 2, n=20, seed_noise=0.0)
    few.seed_labels[1][MIN_CEILING_STUDENTS - 1:] = float("nan")  # only 4 students with both seeds
    assert all(math.isnan(v) for v in seed_ceiling(few).values())
    one_seed = synthetic_task("one", 3, n=20, seed_noise=None)
    assert set(seed_ceiling(one_seed)) == {"spearman", "kendall", "top5", "regret"}
    assert all(math.isnan(v) for v in seed_ceiling(one_seed).values())


def test_ceiling_uses_seed1_to_predict_seed0_on_shared_students():
    task = synthetic_task("noisy", 4, n=10)
    s0 = torch.arange(10, dtype=torch.float32) / 100
    s1 = s0.clone()
    s1[[8, 9]] = s1[[9, 8]]  # seed 1 swaps the two best
    s1[0] = float("nan")
    task.seed_labels = {0: s0, 1: s1}
    c = seed_ceiling(task)
    assert c == rank_metrics(s1[1:].numpy(), s0[1:].numpy())
    assert c["regret"] == pytest.approx(0.01)


def test_plot_writes_a_png(tmp_path, meta):
    _, test, _ = meta
    true = test.labels.numpy()
    rng = np.random.default_rng(0)
    preds = {"dass": true + rng.normal(0, 0.01, len(true)), "params": np.asarray(test.params, float),
             "synflow": rng.normal(size=len(true)), "jacov": -true, "flops": np.full(len(true), 3.0)}
    out = plot_predicted_vs_true(tmp_path / "plots" / "test.png", "test", true, preds)
    data = Path(out).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]
    # No DaSS column: the first method takes the main panel.
    assert plot_predicted_vs_true(tmp_path / "p2.png", "test", true, {"params": preds["params"]}).stat().st_size > 0
    with pytest.raises(ValueError, match="predictions"):
        plot_predicted_vs_true(tmp_path / "p3.png", "test", true, {"dass": true[:3]})


ROOT = Path(__file__).resolve().parents[1]
DB, TEACHERS = ROOT / "dass_edge" / "assets" / "metadb.jsonl", ROOT / "metadb" / "teachers"


@pytest.mark.slow
def test_proxies_on_a_heldout_task_of_the_shipped_db():
    from dass_edge.metadb.store import read_rows
    from dass_edge.predictor.meta_tasks import load_meta_tasks

    rows = [r for r in read_rows(DB) if r["task"] == "glyph-hebrew"]
    if not rows or not (TEACHERS / rows[0]["teacher_file"]).is_file():
        pytest.skip("the shipped meta-database or its glyph-hebrew teacher is not here")
    keep = sorted({r["arch_key"] for r in rows})[::3]  # 14 of the 40 students keep the test quick
    rows = [r for r in rows if r["arch_key"] in keep]
    (task,) = load_meta_tasks(rows, TEACHERS)
    ctx = task_context("glyph-hebrew", rows, TEACHERS)
    assert ctx.images.shape[0] == 64 and ctx.teacher is not None
    again = task_context("glyph-hebrew", rows, TEACHERS)
    assert torch.equal(ctx.images, again.images)
    scores = {n: create_baseline(n).score(task, ctx) for n in ("params", "synflow", "snip", "grad_norm", "jacov")}
    for name, s in scores.items():
        assert s.shape == (len(task),) and np.isfinite(s).all(), name
    assert np.array_equal(scores["snip"], create_baseline("snip").score(task, again))
    # Bigger remapped students keep more of the teacher: synflow and size both track accuracy here.
    assert rank_metrics(scores["synflow"], task.labels.numpy())["spearman"] > 0.3
    assert rank_metrics(scores["params"], task.labels.numpy())["spearman"] > 0.3

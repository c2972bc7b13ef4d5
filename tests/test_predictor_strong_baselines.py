"""``ridge`` and ``diswot`` (checked against hand computations) and baselines as search scorers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dass_edge.data import Split
from dass_edge.errors import DassEdgeError
from dass_edge.models import model_spec
from dass_edge.models.remap import remap
from dass_edge.predictor.baselines import context_from_split, create_baseline
from dass_edge.predictor.meta_tasks import MetaTask
from dass_edge.predictor.metrics import rank_metrics
from dass_edge.predictor.search_scorers import BaselineScorer, candidate_task, check_predictor
from dass_edge.predictor.strong_baselines import diswot_distances, ridge_features
from dass_edge.space import SearchSpace, spec_flops, spec_params
from tests.conftest import perturbed_teacher

pytestmark = pytest.mark.usefixtures("one_thread")

SPEC = model_spec("resnet_edge_s", num_classes=10, resolution=16)
SPACE = SearchSpace(SPEC, fixed_last_stage=False)


def _labelled(name: str, seed: int, n: int = 50, offset: float = 0.0, scale: float = 1.0) -> MetaTask:
    """Students whose label follows a fixed rule of size and shape (plus a per-task offset and scale)."""
    archs = SPACE.sample_many(n, seed=seed)
    specs = [SPACE.to_spec(a) for a in archs]
    flops = np.array([spec_flops(s) for s in specs], float)
    depth4 = np.array([a.depths[3] for a in archs], float)
    labels = offset + scale * (0.05 * np.log(flops) - 0.02 * depth4)
    return MetaTask(name=name, heldout=False, teacher_acc=0.9, teacher_embedding=torch.zeros(0),
                    teacher_code=torch.zeros(1), archs=archs, student_embeddings=torch.zeros(n, 0),
                    codes=torch.zeros(n, 1), labels=torch.tensor(labels), params=[spec_params(s) for s in specs],
                    flops=[int(f) for f in flops], spec=SPEC)


def test_ridge_features_are_teacher_relative():
    task = _labelled("t", 0, n=5)
    task.archs[0] = SPACE.teacher_arch()
    task.flops[0], task.params[0] = spec_flops(SPEC), spec_params(SPEC)
    f = ridge_features(task)
    assert f.shape == (5, 11)
    assert np.allclose(f[0], [0, 0, 0, 2, 2, 2, 2, 1, 1, 1, 1])
    a = task.archs[1]
    assert np.allclose(f[1, 3:7], a.depths)
    assert f[1, 7] == pytest.approx(np.mean(a.widths[0]) / 16)
    assert f[1, 0] == pytest.approx(np.log(task.flops[1] / spec_flops(SPEC)))
    task.spec = None
    with pytest.raises(DassEdgeError, match="spec"):
        ridge_features(task)


def test_ridge_learns_a_size_and_shape_rule_across_task_offsets():
    train = [_labelled(f"tr{i}", i, offset=0.1 * i, scale=1 + i) for i in range(4)]
    test = _labelled("te", 50, offset=0.5)
    b = create_baseline("ridge")
    assert b.trainable and not b.needs_context
    with pytest.raises(DassEdgeError, match="not fitted"):
        b.score(test)
    scores = b.fit(train).score(test)
    assert rank_metrics(scores, test.labels.numpy())["spearman"] > 0.97
    with pytest.raises(DassEdgeError, match="at least one"):
        create_baseline("ridge").fit([])


def _hand_diswot(teacher, student, x):
    """The DisWOT distances written out with numpy loops (GAP + FC head: Grad-CAM weights = W / (H*W))."""
    with torch.no_grad():
        ft, fs = teacher.forward_features(x).double().numpy(), student.forward_features(x).double().numpy()
    wt, ws = teacher.fc.weight.detach().double().numpy(), student.fc.weight.detach().double().numpy()

    def relation(f):
        a = f.reshape(len(f), -1)
        g = a @ a.T
        return g / np.linalg.norm(g, axis=1, keepdims=True)

    def semantic(f, w):
        b, c, h, wd = f.shape
        out = []
        for i in range(b):
            maps = np.maximum(0.0, (w / (h * wd)) @ f[i].reshape(c, -1))  # (K, HW)
            g = maps @ maps.T
            out.append(g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12))
        return np.stack(out)

    rel = np.linalg.norm(relation(ft) - relation(fs))
    sem = np.mean([np.linalg.norm(d) for d in semantic(ft, wt) - semantic(fs, ws)])
    return rel, sem


def test_diswot_matches_a_hand_computation_on_a_tiny_model():
    teacher = perturbed_teacher(num_classes=5, resolution=16)
    arch = SearchSpace(teacher.spec, fixed_last_stage=False).sample_many(1, seed=3)[0]
    student = remap(teacher, arch)
    x = torch.randn(6, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    rel, sem = diswot_distances(teacher, student, x)
    want_rel, want_sem = _hand_diswot(teacher, student, x)
    assert rel == pytest.approx(want_rel, rel=1e-4) and sem == pytest.approx(want_sem, rel=1e-4)
    assert rel > 0 and sem > 0
    assert diswot_distances(teacher, teacher, x) == pytest.approx((0.0, 0.0), abs=1e-6)


def test_diswot_baseline_ranks_the_teacher_shape_first():
    teacher = perturbed_teacher(num_classes=5, resolution=16)
    space = SearchSpace(teacher.spec, fixed_last_stage=False)
    archs = [space.teacher_arch(), *space.sample_many(3, seed=1)]
    g = torch.Generator().manual_seed(0)
    split = Split(torch.randint(0, 256, (8, 3, 16, 16), generator=g, dtype=torch.uint8),
                  torch.randint(0, 5, (8,), generator=g))
    ctx = context_from_split("tiny", split, teacher, batch_size=8)
    b = create_baseline("diswot")
    assert b.needs_context and not b.trainable
    scores = b.score(candidate_task("tiny", archs, teacher), ctx)
    assert scores[0] == pytest.approx(0.0, abs=1e-6) and (scores[1:] < 0).all()
    with pytest.raises(DassEdgeError, match="teacher"):
        b.score(candidate_task("tiny", archs, teacher), None)


def test_needs_context_is_declared_by_each_baseline():
    need = {n for n in ("params", "flops", "synflow", "snip", "grad_norm", "jacov", "arch_only", "metad2a",
                        "ridge", "diswot") if create_baseline(n).needs_context}
    assert need == {"synflow", "snip", "grad_norm", "jacov", "metad2a", "diswot"}


def test_baseline_scorer_for_search(tmp_path):
    from dass_edge.data.task import TaskData

    teacher = perturbed_teacher(num_classes=5, resolution=16)
    space = SearchSpace(teacher.spec)
    archs = space.sample_many(6, seed=2)
    g = torch.Generator().manual_seed(0)
    split = Split(torch.randint(0, 256, (8, 3, 16, 16), generator=g, dtype=torch.uint8),
                  torch.randint(0, 5, (8,), generator=g))
    data = TaskData(name="tiny", class_names=tuple("abcde"), resolution=16, train=split, val=split, test=split)
    scorer = BaselineScorer(create_baseline("flops"), teacher, data, [])
    assert np.array_equal(scorer(archs), [space.flops(a) for a in archs])
    assert scorer.info["baseline"] == "flops" and scorer.context is None and len(scorer([])) == 0
    task = candidate_task("tiny", archs, teacher)
    assert task.teacher_shaped().tolist() == [a == space.teacher_arch() for a in archs]
    assert candidate_task("tiny", [space.teacher_arch()], teacher).teacher_shaped().tolist() == [True]
    check_predictor("synflow")
    check_predictor(None)
    with pytest.raises(DassEdgeError, match="baselines: params, flops"):
        check_predictor(str(tmp_path / "missing.safetensors"))


def test_search_rejects_an_unknown_predictor_key_in_one_line(tmp_path, monkeypatch, capsys):
    from tests.conftest import run_cli

    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(["search", "--latency-ms", "0.3", "--predictor", "oracle"], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: --predictor oracle is neither")
    assert "ridge, diswot" in lines[0] and out == "" and not list(tmp_path.iterdir())

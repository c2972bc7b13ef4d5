"""Meta-training, storing and scoring with the DaSS predictor, and the meta train / meta eval commands.

The database here is synthetic in its labels only: real built-in tasks, real (perturbed) teachers,
real remapping and embeddings, with accuracies a known function of the student's size plus noise,
so that a working pipeline must recover their order on a held-out task.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from dass_edge.io import file_sha256
from dass_edge.metadb.sampling import sample_students
from dass_edge.models.checkpoint import save_checkpoint
from dass_edge.predictor.metrics import rank_metrics
from dass_edge.predictor.training import TrainConfig, meta_train, pairwise_rank_loss, predict_task
from dass_edge.space import SearchSpace
from tests.conftest import perturbed_teacher, run_cli

TASKS = {"count-dots": False, "shapes": False, "textures": True}  # name: held out


@pytest.fixture(scope="module")
def synthetic_db(tmp_path_factory):
    """A 3-task database (2 meta-training, 1 held out) whose labels rise with log-params (50..85%)."""
    root = tmp_path_factory.mktemp("db")
    teachers = root / "teachers"
    teachers.mkdir()
    rows = []
    rng = np.random.default_rng(0)
    for name, heldout in TASKS.items():
        from dass_edge.data import load_task

        n_classes = load_task(name, resolution=16).num_classes
        teacher = perturbed_teacher(num_classes=n_classes, resolution=16)
        path = save_checkpoint(teachers / f"{name}.safetensors", teacher, {"val_acc": 90.0, "task": name})
        sha = file_sha256(path)
        space = SearchSpace(teacher.spec)
        lo, hi = math.log(space.params(space.smallest_arch())), math.log(space.params(space.teacher_arch()))
        for i, arch in enumerate(sample_students(space, 10, seed=len(rows))):  # spread from small to large
            params = space.params(arch)
            acc = 50.0 + 35.0 * (math.log(params) - lo) / (hi - lo) + rng.normal(0, 0.5)
            for seed in ((0, 1) if heldout and i < 6 else (0,)):
                rows.append({"task": name, "teacher_file": path.name, "teacher_sha256": sha, "resolution": 16,
                             "heldout": heldout, "teacher_val_acc": 90.0, "arch": arch.to_dict(),
                             "arch_key": arch.key(), "seed": seed, "recipe_hash": "r", "params": params,
                             "val_acc": round(acc + (0.1 * seed), 4)})
    db = root / "metadb.jsonl"
    db.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return db, teachers


@pytest.fixture(scope="module")
def meta_tasks(synthetic_db):
    from dass_edge.predictor.pipeline import load_db

    return load_db(*synthetic_db)


def test_rank_loss_prefers_the_true_order():
    y = torch.tensor([0.1, 0.5, 0.9])
    good = pairwise_rank_loss(torch.tensor([0.0, 0.5, 1.0]), y)
    bad = pairwise_rank_loss(torch.tensor([1.0, 0.5, 0.0]), y)
    assert float(good) < 0.01 < 1.0 < float(bad)
    # pairs closer than the label-noise margin are ignored
    assert float(pairwise_rank_loss(torch.tensor([1.0, 0.0]), torch.tensor([0.5, 0.5]))) == 0.0


@pytest.mark.slow
def test_meta_training_recovers_the_held_out_order(meta_tasks):
    _, tasks = meta_tasks
    train = [t for t in tasks if not t.heldout]
    held = [t for t in tasks if t.heldout]
    model, history = meta_train(train, TrainConfig(steps=100, tasks_per_step=2, seed=0))
    assert np.mean(history[-10:]) < np.mean(history[:10])
    pred = predict_task(model, held[0])
    assert rank_metrics(pred.numpy(), held[0].labels.numpy())["spearman"] > 0.8
    again, _ = meta_train(train, TrainConfig(steps=100, tasks_per_step=2, seed=0))
    assert torch.allclose(predict_task(again, held[0]), pred)  # deterministic in the seed


def test_store_round_trip_and_bad_files(meta_tasks, tmp_path):
    from dass_edge.errors import DassEdgeError
    from dass_edge.predictor.store import load_predictor, save_predictor

    _, tasks = meta_tasks
    train = [t for t in tasks if not t.heldout]
    models = [meta_train(train, TrainConfig(steps=5, seed=s))[0] for s in (0, 1)]
    path = save_predictor(tmp_path / "p.safetensors", models, {"train": TrainConfig(steps=5).to_dict()})
    loaded, meta = load_predictor(path)
    assert meta["members"] == 2 and len(loaded) == 2
    for a, b in zip(models, loaded):
        assert torch.allclose(predict_task(a, tasks[0]), predict_task(b, tasks[0]))
    with pytest.raises(DassEdgeError, match="does not exist"):
        load_predictor(tmp_path / "missing.safetensors")
    foreign = save_checkpoint(tmp_path / "teacher.safetensors", perturbed_teacher(), {})
    with pytest.raises(DassEdgeError, match="not a dass-edge predictor"):
        load_predictor(foreign)
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors at all")
    with pytest.raises(DassEdgeError, match="not a readable"):
        load_predictor(tmp_path / "junk.safetensors")


@pytest.mark.parametrize("change", [{}, {"target": "relative", "adapt_scope": "head"}])
def test_scorer_matches_the_meta_training_path(synthetic_db, meta_tasks, tmp_path, change):
    """Search scores a student exactly as meta-training saw it: same embedding, code and adaptation
    (and, for teacher-relative targets, the same teacher accuracy added back)."""
    from dass_edge.data import load_task
    from dass_edge.models.checkpoint import load_checkpoint
    from dass_edge.predictor.evaluation import ensemble_predict
    from dass_edge.predictor.scoring import bounded_percent, load_scorer
    from dass_edge.predictor.store import save_predictor

    _, teachers = synthetic_db
    _, tasks = meta_tasks
    train = [t for t in tasks if not t.heldout]
    cfg = TrainConfig(steps=20, **change)
    models = [meta_train(train, TrainConfig(steps=20, seed=s, **change))[0] for s in (0, 1)]
    path = save_predictor(tmp_path / "p.safetensors", models, {"train": cfg.to_dict()})
    held = next(t for t in tasks if t.heldout)
    teacher, tmeta = load_checkpoint(teachers / f"{held.name}.safetensors")
    scorer = load_scorer(teacher, load_task(held.name, resolution=16), path, teacher_meta=tmeta)
    got = scorer(held.archs)
    want = bounded_percent(100.0 * ensemble_predict(models, held))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)
    assert scorer.info["members"] == 2 and scorer.info["teacher_val_acc"] == 90.0
    assert scorer(held.archs[:3]).shape == (3,)
    if change:  # relative targets: a teacher 5 points better moves every prediction up by exactly 5 points
        from dataclasses import replace

        better = replace(held, teacher_acc=held.teacher_acc + 0.05)
        shift = predict_task(models[0], better) - predict_task(models[0], held)
        torch.testing.assert_close(shift, torch.full_like(shift, 0.05), rtol=0, atol=1e-5)


@pytest.mark.slow
def test_meta_train_and_eval_commands(synthetic_db, tmp_path, capsys):
    db, teachers = synthetic_db
    out = tmp_path / "pred.safetensors"
    code, stdout, err = run_cli(["meta", "train", "--db", str(db), "--teachers", str(teachers), "--out", str(out),
                                 "--model", "dass", "--steps", "60", "--members", "1", "--json"], capsys)
    assert code == 0, err
    report = json.loads(stdout)
    assert report["heldout_tasks"] == ["textures"] and set(report["train_tasks"]) == {"count-dots", "shapes"}
    methods = set(report["mean"])
    baselines = {"params", "flops", "synflow", "snip", "grad_norm", "jacov", "arch_only", "metad2a", "ridge", "diswot"}
    assert baselines | {"dass", "ceiling", "seed_vs_seed"} <= methods
    for m in methods - {"ceiling", "seed_vs_seed"}:
        assert set(report["mean"][m]) - {"mae"} == {"spearman", "kendall", "top5", "regret", "band_spearman",
                                                    "budget_regret"}, m
        assert set(report["mean"][m]["budget_regret"]) == {"q20", "q40", "q60", "q80", "mean"}
    assert set(report["mean"]["seed_vs_seed"]) == {"spearman", "kendall", "top5", "regret"}
    assert set(report["mean"]["ceiling"]) == {"noise_sd", "spearman", "band_spearman", "budget_regret"}
    assert set(report["bootstrap"]) == baselines
    for b in report["bootstrap"].values():
        assert set(b) == {"spearman", "band_spearman", "budget_regret"}
        assert all(v["lo"] <= v["diff"] <= v["hi"] for v in b.values() if v["lo"] == v["lo"])
    assert 0.0 <= report["mean"]["dass"]["mae"] < 20.0  # calibrated on the training tasks, anchored on the teacher
    assert report["tasks"]["textures"]["params"]["spearman"] > 0.9  # labels follow size
    # Seeds differ by a constant 0.1 point: tiny noise against a 35-point spread.
    assert report["tasks"]["textures"]["ceiling"]["spearman"] > 0.9
    assert out.is_file()

    plots = tmp_path / "plots"
    code, stdout, err = run_cli(["meta", "eval", "--db", str(db), "--teachers", str(teachers), "--predictor",
                                 str(out), "--plots", str(plots), "--json"], capsys)
    assert code == 0, err
    again = json.loads(stdout)
    assert again["tasks"]["textures"]["dass"] == report["tasks"]["textures"]["dass"]
    png = plots / "textures.png"
    assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG"


def test_meta_commands_reject_bad_input(synthetic_db, tmp_path, capsys):
    db, teachers = synthetic_db
    code, _, err = run_cli(["meta", "train", "--db", str(db), "--teachers", str(teachers), "--out",
                            str(tmp_path / "p.pt")], capsys)
    assert code == 2 and "must end in .safetensors" in err and "Traceback" not in err
    code, _, err = run_cli(["meta", "train", "--db", str(tmp_path / "nope.jsonl"), "--teachers", str(teachers),
                            "--out", str(tmp_path / "p.safetensors")], capsys)
    assert code == 2 and "no database" in err
    code, _, err = run_cli(["meta", "eval", "--db", str(db), "--teachers", str(teachers), "--predictor",
                            str(tmp_path / "missing.safetensors")], capsys)
    assert code == 2 and "does not exist" in err
    code, _, err = run_cli(["meta", "eval", "--db", str(db), "--teachers", str(teachers), "--baselines",
                            "flops,oracle"], capsys)
    assert code == 2 and "unknown baseline oracle" in err and "ridge" in err and "Traceback" not in err
    for flag, value in (("--target", "percent"), ("--adapt-scope", "encoders")):
        out = tmp_path / "bad.safetensors"
        code, _, err = run_cli(["meta", "train", "--db", str(db), "--teachers", str(teachers), "--out", str(out),
                                flag, value], capsys)
        assert code == 2 and flag in err and "Traceback" not in err and not out.exists()
    code, _, err = run_cli(["meta", "eval", "--db", str(db), "--teachers", str(teachers), "--bootstrap", "-1"],
                           capsys)
    assert code == 2 and "--bootstrap" in err
    assert not (tmp_path / "p.safetensors").exists()


def test_bounded_percent_keeps_order_inside_0_100():
    from dass_edge.predictor.scoring import bounded_percent

    x = np.array([-30.0, -1.0, 0.5, 1.0, 50.0, 98.9, 99.0, 100.0, 113.0, 150.0])
    y = bounded_percent(x)
    assert np.all((y > 0) & (y < 100)) and np.all(np.diff(y) > 0)
    np.testing.assert_allclose(y[[3, 4, 5, 6]], x[[3, 4, 5, 6]])  # untouched in [1, 99]


@pytest.mark.slow
def test_meta_train_default_is_the_hybrid_and_eval_adapts_it_k_shot(synthetic_db, tmp_path, capsys):
    from dass_edge.predictor.store import read_predictor_meta

    db, teachers = synthetic_db
    out = tmp_path / "hybrid.safetensors"
    code, stdout, err = run_cli(["meta", "train", "--db", str(db), "--teachers", str(teachers), "--out", str(out),
                                 "--json"], capsys)
    assert code == 0, err
    report = json.loads(stdout)
    meta = read_predictor_meta(out)
    assert meta["model"]["kind"] == "hybrid" and meta["model"]["probe"] and meta["members"] == 1
    assert meta["train"] == {"model": "hybrid", "alpha": 100.0, "probe": True, "probe_size": True,
                             "residual_steps": 0, "descriptors": ["stem", "map"], "single_blocks": True}
    assert "dass" in report["mean"] and "dass_no_adapt" not in report["mean"]  # a hybrid does not adapt
    assert report["tasks"]["textures"]["dass"]["spearman"] > 0.8  # labels follow size: the linear part sees it
    code, stdout, err = run_cli(["meta", "eval", "--db", str(db), "--teachers", str(teachers), "--predictor",
                                 str(out), "--plots", str(tmp_path / "plots"), "--k-shot", "5", "--bootstrap", "0",
                                 "--json"], capsys)
    assert code == 0, err
    again = json.loads(stdout)
    assert again["tasks"]["textures"]["dass"] == report["tasks"]["textures"]["dass"]
    assert "dass_5shot" in again["mean"]
    code, _, err = run_cli(["meta", "train", "--db", str(db), "--teachers", str(teachers), "--out", str(out),
                            "--descriptors", "stem", "--no-single-blocks"], capsys)  # recipe S, the earlier default
    assert code == 0, err
    meta = read_predictor_meta(out)
    assert meta["train"]["descriptors"] == ["stem"] and meta["train"]["single_blocks"] is False
    assert meta["model"]["single_blocks"] is False and meta["model"]["descriptors"] == ["stem"]
    # The colour descriptor: every task's colour probe is measured while the tasks load (the two meta-training
    # tasks' probes differ) and the fit keeps the range it saw.
    code, _, err = run_cli(["meta", "train", "--db", str(db), "--teachers", str(teachers), "--out", str(out),
                            "--descriptors", "stem,colour"], capsys)
    assert code == 0, err
    from dass_edge.predictor.store import load_predictor

    (colour_model,), meta = load_predictor(out)
    assert meta["model"]["descriptors"] == ["stem", "colour"]
    low, high = colour_model.probe_range[:, -1]
    assert np.isfinite([low, high]).all() and high > low
    for args, message in ((["--steps", "5"], "--model dass"), (["--use", "student,arch,teacher"], "--model dass"),
                          (["--model", "dass", "--alpha", "3"], "--model hybrid"), (["--alpha", "-1"], "--alpha"),
                          (["--model", "ridge"], "--model"), (["--descriptors", "texture"], "--descriptors"),
                          (["--descriptors", ","], "--descriptors"),
                          (["--model", "dass", "--descriptors", "stem"], "--model hybrid"),
                          (["--model", "dass", "--single-blocks"], "--model hybrid")):
        code, _, err = run_cli(["meta", "train", "--db", str(db), "--teachers", str(teachers), "--out",
                                str(tmp_path / "x.safetensors"), *args], capsys)
        assert code == 2 and err.startswith("error:") and message in err and err.count("\n") == 1, (args, err)
    assert not (tmp_path / "x.safetensors").exists()


def test_a_held_out_task_with_too_few_seed_pairs_reports_none_not_nan(synthetic_db, meta_tasks):
    """A partly built held-out task (fewer than 5 students with both seeds) has no seed ceiling yet: the report
    says None there, so it prints as JSON and can be stored in a predictor (NaN would block both)."""
    from dataclasses import replace

    from dass_edge.predictor.evaluation import evaluate_heldout
    from dass_edge.predictor.hybrid import HybridPredictor
    from dass_edge.validate import check_finite_record

    _, teachers = synthetic_db
    rows, tasks = meta_tasks
    train = [t for t in tasks if not t.heldout]
    held = [t for t in tasks if t.heldout][0]
    seeds = {s: np.asarray(v, dtype=float).copy() for s, v in held.seed_labels.items()}
    seeds[1][np.flatnonzero(np.isfinite(seeds[1]))[3:]] = np.nan  # 3 seed pairs left
    partial = replace(held, seed_labels={s: torch.as_tensor(v) for s, v in seeds.items()})
    model = HybridPredictor(residual_steps=0, alpha=1.0).fit(train)
    report = evaluate_heldout([model], [*train, partial], rows, teachers, baselines=("flops",), bootstrap=0)
    assert report["tasks"][held.name]["seed_vs_seed"] == {"spearman": None, "kendall": None, "top5": None,
                                                          "regret": None}
    assert report["tasks"][held.name]["dass"]["spearman"] > 0.5  # the task is still scored
    check_finite_record(report, "report")
    json.dumps(report, allow_nan=False)

"""``dass_edge.search`` (plan, run, run folder): checks before anything runs, the search under the budget, its folder.

The latency side is real: the CPU table shipped for the demo teacher at 32 px, loaded with
``this_machine=False`` so these tests run on any machine. The accuracy side is a small deterministic
stand-in (:class:`ToyScorer`) that exists only to exercise the search mechanics; it says nothing
about real accuracy.
"""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from PIL import Image
from reference_table import reference_table

from dass_edge.errors import DassEdgeError
from dass_edge.latency import default_teacher_spec
from dass_edge.search.plan import prepare_search
from dass_edge.search.run import run_search
from dass_edge.space import Arch, SearchSpace, spec_flops, spec_params

BUDGET = 0.35  # ms: between the fastest student (~0.15 ms) and the demo teacher (~0.70 ms) on the shipped table


class ToyScorer:
    """Stand-in for the DaSS predictor (mechanics only): more parameters and depth score higher,
    with a small arch-dependent wobble so that the Pareto front is not trivially one curve."""

    info = {"path": None, "sha256": None, "version": "toy-1", "db": None, "heldout_metrics": {"spearman": 0.0}}

    def __init__(self) -> None:
        self.spec = default_teacher_spec()
        self.space = SearchSpace(self.spec)
        self.batches: list[int] = []

    def __call__(self, archs):
        self.batches.append(len(archs))
        out = []
        for a in archs:
            params = spec_params(self.space.to_spec(a))
            wobble = (sum((i + 1) * w for i, ws in enumerate(a.widths) for w in ws) % 7) / 10
            out.append(40 + 4 * math.log(params / 1e5) + 0.8 * sum(a.depths) + wobble)
        return np.asarray(out)


@pytest.fixture(autouse=True)
def empty_user_tables(tmp_path, monkeypatch):
    """Only the shipped tables: a user's own table store must not change what these tests see."""
    monkeypatch.setenv("DASS_EDGE_TABLES", str(tmp_path / "user-tables"))


@pytest.fixture(scope="module")
def table():
    return reference_table()


def _plan(table, out, latency_ms=BUDGET, **kw):
    return prepare_search(latency_ms, table=table, out=out, **{"budget_evals": 300, "top_k": 3, **kw})


def _candidates(run):
    with open(run / "candidates.csv") as f:
        return [{**r, **{k: float(r[k]) for k in ("predicted_acc", "latency_ms", "params")},
                 "on_front": r["on_front"] == "True"} for r in csv.DictReader(f)]


@pytest.fixture(scope="module")
def searched(table, tmp_path_factory):
    """One search (evolution, 300 students, top 3) shared by the checks on its run folder."""
    run = tmp_path_factory.mktemp("search") / "run"
    scorer = ToyScorer()
    record = run_search(_plan(table, run), scorer)
    return run, record, scorer


def test_picks_meet_the_budget_and_are_ranked(searched, table):
    run, record, _ = searched
    top = record["top"]
    assert [p["rank"] for p in top] == [1, 2, 3]
    assert all(p["latency_ms"] <= BUDGET for p in top)
    accs = [p["predicted_acc"] for p in top]
    assert accs == sorted(accs, reverse=True)
    space = SearchSpace(default_teacher_spec())
    for p in top:
        arch = Arch.from_dict(p["arch"])
        spec = space.to_spec(arch)
        assert p["arch_key"] == arch.key()
        assert p["latency_ms"] == pytest.approx(table.predict(spec)["p50_ms"])
        assert p["latency_p90_ms"] == pytest.approx(table.predict(spec)["p90_ms"])
        assert (p["params"], p["flops"]) == (spec_params(spec), spec_flops(spec))
        assert p["predicted_acc"] == pytest.approx(float(ToyScorer()([arch])[0]))
    best = max(_candidates(run), key=lambda c: c["predicted_acc"])
    assert top[0]["predicted_acc"] == pytest.approx(best["predicted_acc"])  # rank 1 is the best scored student


def test_front_is_non_dominated_and_holds_the_picks(searched):
    run, record, _ = searched
    cands = _candidates(run)
    assert len(cands) == record["evaluated"] >= 300
    assert all(c["latency_ms"] <= BUDGET for c in cands)
    front = [c for c in cands if c["on_front"]]
    assert len(front) == len(record["front"]) >= 1
    for f in front:
        assert not any(c["latency_ms"] <= f["latency_ms"] and c["predicted_acc"] > f["predicted_acc"] for c in cands)
    lats = [f["latency_ms"] for f in record["front"]]
    assert lats == sorted(lats)
    assert all(p["on_front"] for p in record["top"])  # the front is longer than 3 here


def test_search_json_has_the_fields(searched):
    run, record, scorer = searched
    saved = json.loads((run / "search.json").read_text())
    assert saved == json.loads(json.dumps(record))
    for key in ("budget_ms", "budget_binds", "device", "table", "predictor", "evaluated", "seconds", "top", "front",
                "teacher", "task", "data_dir", "resolution", "algo", "budget_evals", "seed", "fastest", "inputs"):
        assert key in saved, key
    assert saved["budget_ms"] == BUDGET and saved["budget_binds"] is True and saved["device"] == "cpu"
    assert saved["task"] == "glyph-latin-upper" and saved["data_dir"] is None and saved["resolution"] == 32
    assert saved["teacher"]["path"] is None and len(saved["teacher"]["sha256"]) == 64
    assert saved["table"]["device"] == "cpu" and saved["table"]["source"] == "shipped"
    assert saved["table"]["sha256"] and saved["table"]["measured_on"]
    assert saved["predictor"] == ToyScorer.info
    assert saved["seconds"] > 0 and saved["run_dir"] == str(run)
    pick_keys = {"arch", "arch_key", "predicted_acc", "latency_ms", "latency_p90_ms", "params", "flops", "rank"}
    assert all(pick_keys <= set(p) for p in saved["top"])
    assert max(scorer.batches) > 1 and len(scorer.batches) < saved["evaluated"]  # scored in batches


def test_rank_configs_round_trip(searched):
    run, record, _ = searched
    for p in record["top"]:
        config = json.loads((run / p["config"]).read_text())
        assert Arch.from_dict(config["arch"]) == Arch.from_dict(p["arch"])
        assert config["rank"] == p["rank"] and config["task"] == "glyph-latin-upper"
        assert config["teacher"]["sha256"] == record["teacher"]["sha256"]


def test_report_and_plot(searched):
    run, record, _ = searched
    md = (run / "report.md").read_text()
    assert f"dass-edge distill {run} --rank 1" in md and f"dass-edge export {run} --format onnx-int8" in md
    assert record["top"][0]["arch_key"] in md and "pareto.png" in md
    with Image.open(run / "pareto.png") as im:
        assert im.format == "PNG" and im.size[0] > 400
    assert sorted(p.name for p in run.parent.iterdir()) == ["run"]  # no staging folder left


def test_distill_reads_the_run_folder(searched):
    from dass_edge.training.distill_run import target_from_run

    run, record, _ = searched
    target = target_from_run(run, rank=2)
    assert target.arch == Arch.from_dict(record["top"][1]["arch"])
    assert target.out == run / "rank2" and target.data.name == "glyph-latin-upper" and target.teacher_path is None


def test_params_max_filters_every_candidate(table, tmp_path):
    limit = 400_000
    record = run_search(_plan(table, tmp_path / "run", params_max=limit, algo="random", budget_evals=200), ToyScorer())
    cands = _candidates(tmp_path / "run")
    assert cands and all(c["params"] <= limit for c in cands)
    assert all(p["params"] <= limit and p["latency_ms"] <= BUDGET for p in record["top"])
    assert record["params_max"] == limit


def test_budget_above_the_teacher_does_not_bind(table, tmp_path):
    record = run_search(_plan(table, tmp_path / "run", latency_ms=50.0, budget_evals=100), ToyScorer())
    assert record["budget_binds"] is False
    assert any("does not bind" in n for n in record["notes"])
    assert record["teacher"]["latency_ms"] < 50.0


def test_two_thousand_candidates(table, tmp_path):
    record = run_search(_plan(table, tmp_path / "run", algo="random", budget_evals=2000), ToyScorer())
    assert record["evaluated"] >= 2000 and len(_candidates(tmp_path / "run")) == record["evaluated"]


def test_seeded(table, tmp_path):
    a = run_search(_plan(table, tmp_path / "a", seed=7, budget_evals=150), ToyScorer())
    b = run_search(_plan(table, tmp_path / "b", seed=7, budget_evals=150), ToyScorer())
    assert [p["arch_key"] for p in a["top"]] == [p["arch_key"] for p in b["top"]]
    assert a["evaluated"] == b["evaluated"]


def test_default_run_ids_do_not_clash(table, tmp_path):
    runs = tmp_path / "runs"
    first = prepare_search(BUDGET, table=table, runs_dir=runs, budget_evals=50, top_k=1)
    assert first.run_id.startswith("search-") and len(first.run_id) == len("search-20250101-120000")
    a = run_search(prepare_search(BUDGET, table=table, runs_dir=runs, run_id="search-x", budget_evals=50, top_k=1),
                   ToyScorer())
    b = run_search(prepare_search(BUDGET, table=table, runs_dir=runs, run_id="search-x", budget_evals=50, top_k=1),
                   ToyScorer())
    assert (a["id"], b["id"]) == ("search-x", "search-x-2")
    assert sorted(p.name for p in runs.iterdir()) == ["search-x", "search-x-2"]
    assert f"dass-edge distill {runs / 'search-x-2'} --rank 1" == b["next_steps"]["distill"]


def test_infeasible_budget_names_the_fastest_student(table, tmp_path):
    with pytest.raises(DassEdgeError, match=r"no student fits 0\.05 ms on cpu: the fastest is \d+\.\d{3} ms "
                                            r"\(d1-1-1-1_w[0-9.-]+\)") as e:
        prepare_search(0.05, table=table, out=tmp_path / "run")
    assert "\n" not in str(e.value)
    assert not list(tmp_path.iterdir())


def test_params_max_below_the_smallest_student(table, tmp_path):
    with pytest.raises(DassEdgeError, match="below the smallest student"):
        prepare_search(BUDGET, table=table, out=tmp_path / "run", params_max=1000)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("kwargs, message", [
    ({"latency_ms": 0}, "--latency-ms must be a positive"),
    ({"latency_ms": -1.0}, "--latency-ms must be a positive"),
    ({"latency_ms": float("nan")}, "--latency-ms must be a positive"),
    ({"top_k": 0}, "--top-k must be >= 1"),
    ({"budget_evals": 0}, "--budget-evals must be >= 1"),
    ({"algo": "annealing"}, "unknown search algorithm 'annealing'"),
    ({"task": "shapes", "data_dir": "somewhere"}, "either --task or --data"),
    ({"task": "textures"}, "the teacher has 26 classes but task textures has 12"),
    ({"task": "no-such-task"}, "unknown task"),
    ({"device": "no-such-device"}, "unknown device 'no-such-device'"),
    ({"teacher": "missing.safetensors"}, "does not exist"),
])
def test_bad_input_fails_before_anything_is_written(tmp_path, kwargs, message):
    args = {"latency_ms": BUDGET, "out": tmp_path / "run", **kwargs}
    with pytest.raises(DassEdgeError, match=message) as e:
        prepare_search(args.pop("latency_ms"), **args)
    assert "\n" not in str(e.value)
    assert not list(tmp_path.iterdir())


def test_named_device_without_a_table(tmp_path):
    with pytest.raises(DassEdgeError, match="dass-edge profile --device jetson-orin-nano"):
        prepare_search(BUDGET, device="jetson-orin-nano", out=tmp_path / "run")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_table_of_another_device_is_refused(table, tmp_path):
    with pytest.raises(DassEdgeError, match="measured for device 'cpu', not 'gpu'"):
        prepare_search(BUDGET, device="gpu", table=table, out=tmp_path / "run")


@pytest.mark.parametrize("make_out, message", [
    (lambda tmp: "/proc/no/such/run", "cannot create --out"),
    (lambda tmp: (tmp / "file").write_text("x") and tmp / "file", "is a file"),
    (lambda tmp: ((tmp / "full").mkdir(), (tmp / "full" / "keep").write_text("x"), tmp / "full")[-1],
     "already exists and is not empty"),
])
def test_unusable_out(table, tmp_path, make_out, message):
    out = make_out(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(DassEdgeError, match=message):
        prepare_search(BUDGET, table=table, out=out)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_empty_existing_out_is_used(table, tmp_path):
    (tmp_path / "run").mkdir()
    run_search(_plan(table, tmp_path / "run", budget_evals=50, top_k=1), ToyScorer())
    assert (tmp_path / "run" / "search.json").is_file()


class Boom(Exception):
    pass


def test_a_failing_scorer_leaves_nothing(table, tmp_path):
    class Failing(ToyScorer):
        def __call__(self, archs):
            if len(self.batches) >= 2:
                raise Boom
            return super().__call__(archs)

    plan = _plan(table, tmp_path / "deep" / "er" / "run")
    with pytest.raises(Boom):
        run_search(plan, Failing())
    assert not list(tmp_path.iterdir())


def test_a_failed_write_leaves_nothing(table, tmp_path, monkeypatch):
    import dass_edge.search.report as report

    def broken(folder, record, candidates):
        (folder / "report.md").write_text("half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report, "write_report", broken)
    with pytest.raises(OSError, match="No space left"):
        run_search(_plan(table, tmp_path / "deep" / "er" / "run", budget_evals=50), ToyScorer())
    assert not list(tmp_path.iterdir())  # neither the staging folder nor the parents it created


def test_predictor_provenance_is_plain_json(table, tmp_path):
    class WithPath(ToyScorer):
        info = {"path": tmp_path / "predictor.pt", "heldout_metrics": {"spearman": np.float32(0.5)}}

    record = run_search(_plan(table, tmp_path / "run", budget_evals=50), WithPath())
    assert record["predictor"] == {"path": str(tmp_path / "predictor.pt"), "heldout_metrics": {"spearman": 0.5}}
    assert json.loads((tmp_path / "run" / "search.json").read_text())["predictor"] == record["predictor"]


def test_malformed_scores_are_a_clear_error(table, tmp_path):
    class Short(ToyScorer):
        def __call__(self, archs):
            return super().__call__(archs)[:-1]

    with pytest.raises(DassEdgeError, match="the accuracy predictor returned"):
        run_search(_plan(table, tmp_path / "run"), Short())
    assert not list(tmp_path.iterdir())


def test_search_with_the_shipped_predictor(table, tmp_path):
    """The product path end to end: the shipped predictor adapted to the demo teacher, real embeddings."""
    from dass_edge.io import file_sha256
    from dass_edge.predictor.scoring import load_scorer
    from dass_edge.predictor.store import default_predictor_path

    plan = _plan(table, tmp_path / "run", budget_evals=300, top_k=3)
    scorer = load_scorer(plan.teacher, plan.data, teacher_meta=plan.teacher_meta)
    record = run_search(plan, scorer)
    accs = [p["predicted_acc"] for p in record["top"]]
    assert accs == sorted(accs, reverse=True) and all(0.0 < a < 100.0 for a in accs)
    assert all(p["latency_ms"] <= BUDGET for p in record["top"]) and record["evaluated"] >= 300
    assert record["predictor"]["sha256"] == file_sha256(default_predictor_path())
    assert record["predictor"]["teacher_val_acc"] == plan.teacher_meta["val_acc"]
    again = scorer([Arch.from_dict(record["top"][0]["arch"])])  # a warm cache gives the same score
    assert abs(float(again[0]) - accs[0]) < 1e-4


def test_search_with_a_hybrid_predictor_file(table, tmp_path):
    """A hybrid (predictor v2) file: saved, loaded, probed on the demo teacher's data, and searched with."""
    from dass_edge.predictor.hybrid import HybridPredictor
    from dass_edge.predictor.meta_tasks import unlabelled_task
    from dass_edge.predictor.scoring import HybridScorer, load_scorer
    from dass_edge.predictor.store import load_predictor, save_predictor
    from tests.test_predictor_task_probe import _task

    train = [_task(f"t{i}", i, early) for i, early in enumerate((0.5, 0.6, 0.85, 0.9))]
    model = HybridPredictor(residual_steps=0, probe=True, alpha=10.0).fit(train)
    path = save_predictor(tmp_path / "v2.safetensors", [model],
                          {"train": {"model": "hybrid"}, "calibration": {"slope": 0.03, "intercept": -0.01}})
    (loaded,), meta = load_predictor(path)
    assert meta["model"]["kind"] == "hybrid" and loaded.probe and np.allclose(loaded.coef, model.coef)

    plan = _plan(table, tmp_path / "run", budget_evals=200, top_k=3)
    scorer = load_scorer(plan.teacher, plan.data, path, teacher_meta=plan.teacher_meta)
    assert isinstance(scorer, HybridScorer) and len(scorer.info["probe_profile"]) == 4
    record = run_search(plan, scorer)
    accs = [p["predicted_acc"] for p in record["top"]]
    assert accs == sorted(accs, reverse=True) and all(0.0 < a < 100.0 for a in accs)
    assert all(p["latency_ms"] <= BUDGET for p in record["top"])
    assert record["predictor"]["kind"] == "hybrid" and record["predictor"]["inputs"] == ["shape", "probe"]
    # The scores are the model's own order on this task's probe profile (calibration is monotone).
    archs = [Arch.from_dict(p["arch"]) for p in record["top"]]
    raw = model.score(unlabelled_task("x", archs, plan.teacher.spec, tuple(scorer.info["probe_profile"])))
    assert list(np.argsort(-raw)) == [0, 1, 2]


def test_a_hybrid_with_the_colour_descriptor_probes_the_users_colours(table, tmp_path):
    """A hybrid modulated by the colour descriptor: the scorer measures the colour probe on this task's images
    (the demo's glyphs draw their colours at random: near chance), records it, and scores with it."""
    from dass_edge.predictor.hybrid import HybridPredictor
    from dass_edge.predictor.meta_tasks import unlabelled_task
    from dass_edge.predictor.scoring import load_scorer
    from dass_edge.predictor.store import save_predictor
    from dass_edge.predictor.task_probe import colour_probe_accuracy
    from tests.test_predictor_task_probe import _task

    train = [_task(f"t{i}", i, early) for i, early in enumerate((0.5, 0.6, 0.85, 0.9))]
    for t, probe in zip(train, (0.05, 0.1, 0.3, 0.5)):
        t.colour_probe = probe
    model = HybridPredictor(residual_steps=0, probe=True, alpha=10.0, descriptors=("colour",)).fit(train)
    path = save_predictor(tmp_path / "colour.safetensors", [model],
                          {"train": {"model": "hybrid"}, "calibration": {"slope": 0.03, "intercept": -0.01}})
    plan = _plan(table, tmp_path / "run", budget_evals=100, top_k=3)
    scorer = load_scorer(plan.teacher, plan.data, path, teacher_meta=plan.teacher_meta)
    measured = colour_probe_accuracy(plan.data)
    assert scorer.info["colour_probe"] == round(measured, 4) and measured < 3.0 / plan.data.num_classes
    assert scorer.info["inputs"] == ["shape", "probe", "teacher:colour"]
    archs = SearchSpace(plan.teacher.spec).sample_many(5, seed=0)
    raw = model.score(unlabelled_task("x", archs, plan.teacher.spec, tuple(scorer.info["probe_profile"]), measured))
    assert list(np.argsort(-raw)) == list(np.argsort(-np.asarray(scorer(archs))))

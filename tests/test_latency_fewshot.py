"""Few-shot latency tables: student choice, the transfer fit, the written table, the command and its errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import run_cli
from reference_table import reference_table
from test_latency_profile import TINY_TEACHER, tiny_profile

from dass_edge.errors import DassEdgeError
from dass_edge.latency import LatencyTable, profile_device
from dass_edge.latency.entries import Entry
from dass_edge.latency.fewshot import (
    COLUMNS,
    describe_transfer,
    entry_columns,
    fewshot_warning,
    fit_transfer,
    profile_fewshot,
    spanning_students,
    transfer_table,
)
from dass_edge.space import SearchSpace


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("DASS_EDGE_TABLES", str(tmp_path / "tables"))
    monkeypatch.setenv("DASS_EDGE_PROFILES", str(tmp_path / "profiles"))


@pytest.fixture(scope="module")
def shipped() -> LatencyTable:
    """The shipped CPU table: real measured entries to transfer from."""
    return reference_table()


def _as_table(source: LatencyTable, fit) -> LatencyTable:
    mapped = transfer_table(source, fit)
    data = {**source.data, "entries": mapped["entries"], "overhead": mapped["overhead"],
            "correction": {"features": ["lut_ms", "const"], "p50": [1.0, mapped["const_ms"]], "p90_ratio": 1.0}}
    return LatencyTable(data)


def test_spanning_students_start_with_teacher_and_smallest_and_are_nested(shipped):
    space = SearchSpace(shipped.teacher)
    picks = spanning_students(space, 12)
    assert picks[0] == space.teacher_arch() and picks[1] == space.smallest_arch()
    assert len(set(picks)) == 12 and all(space.contains(a) for a in picks)
    assert spanning_students(space, 5) == picks[:5]  # farthest-point order is nested
    depths = {a.depths for a in picks}
    assert len(depths) >= 6  # spread over depths, not 12 variations of one shape


def test_entry_columns_count_block_activations_and_macs():
    """A stride-2 block with a projection: 16x32x32 in, 32x16x16 out; MACs of two 3x3 convs and the 1x1."""
    cols = entry_columns(Entry("block", 16, 32, 2, 32), 0.25)
    assert cols == pytest.approx({"src:block": 0.25, "mparams:block": 14528 / 1e6,
                                  "mact:block": (16 * 32 * 32 + 32 * 16 * 16) / 1e6,
                                  "gmacs:block": (9 * 16 * 32 + 9 * 32 * 32 + 16 * 32) * 16 * 16 / 1e9,
                                  "calls:block": 1.0, "src*log2res:block": 0.25 * 5})
    assert entry_columns(Entry("block", 16, 16, 1, 8), 0.1)["gmacs:block"] == pytest.approx(9 * 16 * 16 * 2 * 64 / 1e9)
    assert entry_columns(Entry("head", 128, 26, 1, 4), 0.01) == pytest.approx({"src:head": 0.01,
                                                                               "mparams:head": 3354 / 1e6})
    assert set(entry_columns(Entry("stem", 3, 16, 1, 32, stem="small"), 0.02)) == {"src:stem", "mparams:stem"}


def _device(shipped: LatencyTable, **coef: float):
    """A synthetic device whose every entry is a known mix of the transfer's columns (others 0)."""
    from dass_edge.latency.fewshot import _student_row

    truth = np.array([coef.get(c.replace(":", "_"), 0.0) for c in COLUMNS])
    return lambda spec: float(_student_row(shipped, spec) @ truth)


def test_a_uniformly_slower_device_is_transferred_exactly_from_three_students(shipped):
    """Data that agree with the prior (the source's prediction times a ratio) leave the prior unchanged."""
    space = SearchSpace(shipped.teacher)
    specs = [space.to_spec(a) for a in spanning_students(space, 3)]
    fit = fit_transfer(shipped, specs, [2.5 * shipped.predict(s)["p50_ms"] for s in specs])
    assert fit.ratio == pytest.approx(2.5)
    table = _as_table(shipped, fit)
    for arch in space.sample_many(20, seed=3):
        spec = space.to_spec(arch)
        assert table.predict(spec)["p50_ms"] == pytest.approx(2.5 * shipped.predict(spec)["p50_ms"], rel=1e-6)


def test_a_size_dependent_speedup_is_learned_from_enough_students(shipped):
    """An INT8-like device: blocks cost 0.3x their source time plus 1.5 ms per million activation elements
    (quantize/dequantize), so large-resolution blocks slow down and small ones speed up. 40 students
    recover it on held-out students; one global ratio cannot."""
    space = SearchSpace(shipped.teacher)
    device_ms = _device(shipped, src_stem=0.9, src_block=0.3, src_head=0.9, mact_block=1.5, const=0.05)
    specs = [space.to_spec(a) for a in spanning_students(space, 40)]
    fit = fit_transfer(shipped, specs, [device_ms(s) for s in specs])
    held = [space.to_spec(a) for a in space.sample_many(40, seed=11)]
    err = np.array([_as_table(shipped, fit).predict(s)["p50_ms"] / device_ms(s) - 1 for s in held])
    assert np.mean(np.abs(err) <= 0.10) >= 0.95
    ratio = np.median([device_ms(s) / shipped.predict(s)["p50_ms"] for s in specs])
    err_ratio = np.array([ratio * shipped.predict(s)["p50_ms"] / device_ms(s) - 1 for s in held])
    assert np.sqrt(np.mean(err**2)) < 0.5 * np.sqrt(np.mean(err_ratio**2))  # better than one global ratio
    coef = dict(zip(fit.columns, fit.coef))
    assert coef["mact:block"] > 1.0 and coef["src:block"] < 0.6 * fit.ratio  # the size effect, not a scale
    assert not fit.raised


def test_a_per_block_dispatch_cost_is_learned(shipped):
    """A device that pays a fixed 0.02 ms per block on top of 0.5x the source (e.g. quantize/dequantize nodes):
    deep students slow down relative to shallow ones of equal source time. 20 students recover the per-block
    cost and predict held-out students within 5%."""
    space = SearchSpace(shipped.teacher)
    device_ms = _device(shipped, src_stem=0.5, src_block=0.5, src_head=0.5, calls_block=0.02, const=0.01)
    specs = [space.to_spec(a) for a in spanning_students(space, 20)]
    fit = fit_transfer(shipped, specs, [device_ms(s) for s in specs])
    assert dict(zip(fit.columns, fit.coef))["calls:block"] == pytest.approx(0.02, rel=0.25)
    table = _as_table(shipped, fit)
    held = [space.to_spec(a) for a in space.sample_many(30, seed=7)]
    err = np.array([table.predict(s)["p50_ms"] / device_ms(s) - 1 for s in held])
    assert np.max(np.abs(err)) < 0.05


def test_a_speedup_that_grows_with_resolution_is_learned(shipped):
    """An INT8-like device whose kernels gain more on large feature maps: a block costs (0.9 - 0.1 log2 r) x its
    source time at input side r (0.4x at 32, 0.7x at 4), so wide early stages speed up more than late ones.
    20 students recover the drift and predict held-out students within 5%; one global ratio cannot."""
    space = SearchSpace(shipped.teacher)
    from dass_edge.latency.entries import spec_entries

    stat = shipped.data["lut_statistic"]

    def device_ms(spec) -> float:  # written out, not through the transfer's own columns
        return 0.01 + sum(shipped.entries[e.key][stat] * ((0.9 - 0.1 * math.log2(e.resolution)) if e.kind == "block"
                                                          else 0.6) for e in spec_entries(spec, shipped.batch))

    specs = [space.to_spec(a) for a in spanning_students(space, 20)]
    fit = fit_transfer(shipped, specs, [device_ms(s) for s in specs])
    assert dict(zip(fit.columns, fit.coef))["src*log2res:block"] < 0  # (it shares the effect with the size columns)
    held = [space.to_spec(a) for a in space.sample_many(30, seed=9)]
    table = _as_table(shipped, fit)
    err = np.array([table.predict(s)["p50_ms"] / device_ms(s) - 1 for s in held])
    assert np.max(np.abs(err)) < 0.05
    ratio = np.median([device_ms(s) / shipped.predict(s)["p50_ms"] for s in specs])
    err_ratio = np.array([ratio * shipped.predict(s)["p50_ms"] / device_ms(s) - 1 for s in held])
    assert np.max(np.abs(err_ratio)) > 2 * np.max(np.abs(err))


def test_the_transferred_table_predicts_what_the_fit_does(shipped):
    space = SearchSpace(shipped.teacher)
    device_ms = _device(shipped, src_stem=1.2, src_block=0.6, src_head=1.0, mparams_block=0.2, mact_block=0.8,
                        gmacs_block=-3.0, const=0.02)
    specs = [space.to_spec(a) for a in spanning_students(space, 20)]
    fit = fit_transfer(shipped, specs, [device_ms(s) for s in specs])
    coef = dict(zip(fit.columns, fit.coef))
    assert abs(coef["mact:block"]) > 1e-3 and abs(coef["gmacs:block"]) > 1e-3  # the size columns were used
    table = _as_table(shipped, fit)
    for arch in space.sample_many(20, seed=5):
        spec = space.to_spec(arch)
        assert table.predict(spec)["p50_ms"] == pytest.approx(fit.predict_ms(shipped, spec), rel=1e-9)


def test_no_entry_gets_a_negative_latency(shipped):
    """A device whose true per-block cost goes negative for MAC-heavy blocks (source time minus 15 ms per
    GMAC): students stay positive, but the least-regularized fit would write negative entries, so the
    ridge is raised until every entry is >= 0 and the table still reproduces the fit."""
    space = SearchSpace(shipped.teacher)
    device_ms = _device(shipped, src_stem=1.0, src_block=1.0, src_head=1.0, gmacs_block=-15.0, const=0.05)
    specs = [space.to_spec(a) for a in spanning_students(space, 40)]
    fit = fit_transfer(shipped, specs, [device_ms(s) for s in specs])
    assert fit.raised and fit.lam > 0.1 and fit.to_dict()["ridge_raised_for_nonnegative_entries"]
    mapped = transfer_table(shipped, fit)
    assert min(e[shipped.data["lut_statistic"]] for e in mapped["entries"].values()) > 0
    table = _as_table(shipped, fit)
    for arch in space.sample_many(10, seed=6):
        spec = space.to_spec(arch)
        assert table.predict(spec)["p50_ms"] == pytest.approx(fit.predict_ms(shipped, spec), rel=1e-9)


def test_fit_needs_three_students(shipped):
    space = SearchSpace(shipped.teacher)
    specs = [space.to_spec(space.teacher_arch())]
    with pytest.raises(DassEdgeError, match="at least 3 measured students"):
        fit_transfer(shipped, specs, [1.0])


@pytest.fixture(scope="module")
def tiny_source(tmp_path_factory):
    d = tmp_path_factory.mktemp("src")
    profile = tiny_profile(d / "profiles")
    return profile, profile_device(str(profile), TINY_TEACHER, out=d / "source.json", students=4).path


def test_profile_fewshot_writes_a_transferred_table(tiny_source, tmp_path):
    profile, source = tiny_source
    res = profile_fewshot(str(profile), TINY_TEACHER, 4, source=source, heldout=3)
    assert res.path.name.endswith("_fewshot4.json") and res.path.parent == tmp_path / "tables"
    data = json.loads(res.path.read_text())
    tr = data["transferred"]
    assert tr["samples"] == 4 and len(tr["fit_samples"]) == 4 and "source.json" in tr["from"]
    assert data["fidelity"]["students"] == 3 and data["fidelity"]["method"].startswith("held-out")
    assert all(e["transferred"] and e["count"] == 0 for e in data["entries"].values())
    src = LatencyTable.load(source)
    assert set(data["entries"]) == set(src.entries)
    table = LatencyTable.load(res.path)  # a normal, valid table
    fit_archs = [s["arch"] for s in tr["fit_samples"]]
    held_archs = [s["arch"] for s in data["fidelity"]["samples"]]
    assert not set(map(json.dumps, fit_archs)) & set(map(json.dumps, held_archs))  # held-out means not fitted
    sample = data["fidelity"]["samples"][0]
    space = SearchSpace(TINY_TEACHER)
    from dass_edge.space import Arch

    assert table.predict(space.to_spec(Arch.from_dict(sample["arch"])))["p50_ms"] == pytest.approx(
        sample["predicted_p50_ms"])
    note = describe_transfer(data)
    assert note.startswith("transferred from tiny") and "4 students" in note and "3 students" in note
    assert describe_transfer(src.data) is None


def test_fewshot_warning_only_below_the_profiles_target():
    """Held-out fidelity below the profile's target gets one line quoting the fit's own leave-one-out; a table
    that meets it, one without held-out students, or a measured table gets none."""
    loo = {"within_10pct": 0.2, "spearman": 0.483}
    data = {"device": "cpu-int8", "provenance": {"profile": {"target_within_10pct": 0.9, "target_spearman": 0.95}},
            "transferred": {"samples": 20, "fit": {"leave_one_out": loo}},
            "fidelity": {"students": 30, "within_10pct": 0.1, "spearman": 0.406}}
    line = fewshot_warning(data)
    assert "10% within ±10% (target 90%)" in line and "Spearman 0.483" in line and "--few-shot 40" in line
    assert "dass-edge profile --device cpu-int8" in line
    assert fewshot_warning({**data, "fidelity": {"students": 30, "within_10pct": 0.93, "spearman": 0.96}}) is None
    looser = {**data, "provenance": {"profile": {"target_within_10pct": 0.05, "target_spearman": 0.3}}}
    assert fewshot_warning(looser) is None  # the profile's own target, not a fixed one
    assert fewshot_warning({**data, "fidelity": {"students": 0}}) is None
    assert fewshot_warning({k: v for k, v in data.items() if k != "transferred"}) is None


def test_profile_fewshot_rejects_bad_input_and_writes_nothing(tiny_source, tmp_path):
    profile, source = tiny_source
    with pytest.raises(DassEdgeError, match="--few-shot must be an integer >= 3"):
        profile_fewshot(str(profile), TINY_TEACHER, 2, source=source)
    with pytest.raises(DassEdgeError, match="no such table file"):
        profile_fewshot(str(profile), TINY_TEACHER, 4, source=tmp_path / "nope.json")
    with pytest.raises(DassEdgeError, match="measured at 32 px, not 16"):
        profile_fewshot(str(profile), TINY_TEACHER, 4, 16, source=source)
    with pytest.raises(DassEdgeError, match="does not cover this teacher's search space"):
        profile_fewshot(str(profile), TINY_TEACHER.replace(num_classes=5), 4, source=source)
    first = profile_fewshot(str(profile), TINY_TEACHER, 3, source=source, heldout=0, out=tmp_path / "t.json")
    with pytest.raises(DassEdgeError, match="itself transferred"):
        profile_fewshot(str(profile), TINY_TEACHER, 3, source=first.path, out=tmp_path / "u.json")
    assert not (tmp_path / "u.json").exists() and not (tmp_path / "tables").exists()


def test_cli_profile_few_shot(tiny_source, tmp_path, capsys):
    from dass_edge.models import build_model, save_checkpoint

    profile, source = tiny_source
    out = tmp_path / "fs.json"
    ckpt = str(save_checkpoint(tmp_path / "t.safetensors", build_model(TINY_TEACHER)))
    code, stdout, err = run_cli(["profile", "--device", str(profile), "--teacher", ckpt, "--few-shot", "3", "--from",
                                 str(source), "--students", "2", "--out", str(out), "--json"], capsys)
    assert code == 0, err
    got = json.loads(stdout)
    assert got["transferred"]["samples"] == 3 and got["heldout"] == 2 and got["fidelity"]["students"] == 2
    assert LatencyTable.load(out).data["transferred"]["samples"] == 3
    code, _, err = run_cli(["profile", "--device", str(profile), "--from", str(source)], capsys)
    assert code == 2 and err.strip() == "error: --from only applies with --few-shot N"
    code, _, err = run_cli(["profile", "--device", str(profile), "--teacher", ckpt, "--few-shot", "1", "--from",
                            str(source)], capsys)
    assert code == 2 and "--few-shot must be an integer >= 3" in err and len(err.strip().splitlines()) == 1


def test_devices_says_a_table_is_transferred(tiny_source, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")  # one line per row
    profile, source = tiny_source
    profile_fewshot(str(profile), TINY_TEACHER, 3, source=source, heldout=0)
    (tmp_path / "profiles").mkdir(exist_ok=True)
    (tmp_path / "profiles" / "tiny.yaml").write_text(profile.read_text())
    code, stdout, _ = run_cli(["devices", "--json"], capsys)
    assert code == 0
    rows = {r["name"]: r for r in json.loads(stdout)}
    assert rows["tiny"]["table"]["transferred"]["samples"] == 3
    assert rows["cpu"]["table"] is None or rows["cpu"]["table"]["transferred"] is None
    code, stdout, _ = run_cli(["devices"], capsys)
    assert code == 0 and "transferred (3" in stdout


def test_search_on_a_transferred_table_says_so(shipped, tmp_path):
    """The search runs on a transferred table and its notes and search.json name the transfer."""
    from test_search_run import ToyScorer

    from dass_edge.search.plan import prepare_search
    from dass_edge.search.run import run_search

    space = SearchSpace(shipped.teacher)
    specs = [space.to_spec(a) for a in spanning_students(space, 5)]
    fit = fit_transfer(shipped, specs, [1.5 * shipped.predict(s)["p50_ms"] for s in specs])
    table = _as_table(shipped, fit)
    table.data["transferred"] = {"from": "cpu (onnxruntime fp32) on a test machine: source.json", "samples": 5}
    table.data["fidelity"] = {"students": 10, "within_10pct": 0.9, "rmspe": 0.05, "spearman": 0.97}
    path = tmp_path / "transferred.json"
    path.write_text(json.dumps(table.data))
    run = tmp_path / "run"
    record = run_search(prepare_search(0.5, table=LatencyTable.load(path), out=run, budget_evals=50, top_k=1),
                        ToyScorer())
    saved = json.loads((run / "search.json").read_text())
    assert saved["table"]["transferred"] == {"from": "cpu (onnxruntime fp32) on a test machine: source.json",
                                             "samples": 5}
    note = [n for n in record["notes"] if "transferred" in n]
    assert note and "5 students" in note[0] and "90% within ±10%, Spearman 0.97" in note[0]


def test_the_default_source_is_this_machines_table_then_the_newest(tmp_path, monkeypatch):
    """Without --from, a transfer starts from a table measured on this machine (the same hardware) when there is
    one, even if another machine's is newer; with none here, from the newest table of any machine."""
    import dass_edge.latency.store as store_mod
    from dass_edge.latency import default_teacher_spec, load_profile
    from dass_edge.latency.fewshot import _load_source

    monkeypatch.setattr(store_mod, "this_machine_label", lambda profile: "Test CPU (2 cores)")  # no shipped one
    doc = json.loads(reference_table().path.read_text())
    store = tmp_path / "tables"
    store.mkdir(parents=True, exist_ok=True)
    for name, where, date in (("here", "Test CPU (2 cores)", "2026-01-01T00:00:00+00:00"),
                              ("elsewhere", "Some Other CPU (2 cores)", "2099-01-01T00:00:00+00:00")):
        (store / f"cpu_{name}.json").write_text(json.dumps(
            {**doc, "provenance": {**doc["provenance"], "measured_on": where, "date": date}}))
    profile, teacher = load_profile("cpu-torch"), default_teacher_spec()
    assert _load_source(None, profile, teacher, 32, True).path.name == "cpu_here.json"
    (store / "cpu_here.json").unlink()
    assert _load_source(None, profile, teacher, 32, True).path.name == "cpu_elsewhere.json"

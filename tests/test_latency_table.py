"""Table format: validation on load, prediction, lookup in the user store and shipped tables."""

from __future__ import annotations

import copy
import json

import pytest

from dass_edge.errors import DassEdgeError
from dass_edge.latency import LatencyTable, default_teacher_spec, find_tables, load_table, space_entries
from dass_edge.latency.entries import entry_params, spec_entries
from dass_edge.latency.table import FORMAT, LUT_STATISTIC, VERSION
from dass_edge.resources import tables_dir
from dass_edge.space import SearchSpace
from dass_edge.spec import ModelSpec

TEACHER = ModelSpec.uniform((4, 4, 4, 4), (1, 1, 1, 1), num_classes=3, resolution=32)


def synthetic_table(teacher: ModelSpec = TEACHER, device: str = "cpu", date: str = "2024-01-01T00:00:00+00:00",
                    correction: dict | None = None) -> dict:
    """A well-formed table with made-up numbers (tests only; never shipped)."""
    entries = {}
    for e in space_entries(SearchSpace(teacher)):
        v = 0.001 * e.in_ch * e.out_ch / e.stride
        entries[e.key] = {**e.to_dict(), "p25_ms": v, "p50_ms": 1.1 * v, "p90_ms": 1.5 * v, "mean_ms": 1.2 * v,
                          "std_ms": 0.1 * v, "count": 10, "raw_p50_ms": 1.1 * v + 0.01, "params": entry_params(e)}
    return {
        "format": FORMAT, "version": VERSION, "device": device, "backend": "onnxruntime", "precision": "fp32",
        "batch": 1, "threads": 1, "resolution": teacher.resolution, "lut_statistic": LUT_STATISTIC,
        "space": {"teacher": teacher.to_dict(), "fixed_last_stage": True},
        "provenance": {"date": date, "measured_on": "test machine"},
        "overhead": {"p25_ms": 0.005, "p50_ms": 0.006, "p90_ms": 0.01, "mean_ms": 0.007, "std_ms": 0.001},
        "entries": entries,
        "correction": correction or {"features": ["lut_ms", "weights_mb", "const"], "p50": [2.0, 10.0, 0.1],
                                     "p90_ratio": 1.5},
        "fidelity": {"students": 30, "within_10pct": 0.9, "rmspe": 0.05, "spearman": 0.97},
    }


@pytest.fixture(autouse=True)
def _isolated_store(tmp_path, monkeypatch):
    monkeypatch.setenv("DASS_EDGE_TABLES", str(tmp_path / "tables"))
    monkeypatch.setenv("DASS_EDGE_PROFILES", str(tmp_path / "profiles"))


def test_predict_adds_entries_once_overhead_and_applies_correction():
    table = LatencyTable(synthetic_table())
    space = SearchSpace(TEACHER)
    for arch in space.sample_many(10, seed=0):
        spec = space.to_spec(arch)
        entries = spec_entries(spec)
        lut = 0.005 + sum(table.entries[e.key]["p25_ms"] for e in entries)
        mb = sum(entry_params(e) for e in entries) * 4 / 1e6
        got = table.predict(spec)
        assert got["lut_ms"] == pytest.approx(lut)
        assert got["p50_ms"] == pytest.approx(2.0 * lut + 10.0 * mb + 0.1)
        assert got["p90_ms"] == pytest.approx(1.5 * got["p50_ms"])


def test_predict_orders_bigger_students_slower():
    table = LatencyTable(synthetic_table())
    space = SearchSpace(TEACHER)
    small, big = space.to_spec(space.smallest_arch()), space.to_spec(space.teacher_arch())
    assert table.predict(small)["p50_ms"] < table.predict(big)["p50_ms"]


def test_predict_outside_the_table_names_the_command():
    table = LatencyTable(synthetic_table())
    other = ModelSpec.uniform((16, 16, 16, 16), (1, 1, 1, 1), num_classes=3, resolution=32)
    with pytest.raises(DassEdgeError, match="dass-edge profile --device cpu --resolution 32"):
        table.predict(other)
    assert table.missing(SearchSpace(other)) and not table.missing(SearchSpace(TEACHER))


def _break(path: str, value):
    data = synthetic_table()
    *parents, last = path.split(".")
    node = data
    for p in parents:
        node = node[p] if not p.startswith("[") else node[list(node)[0]]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return data


@pytest.mark.parametrize("path,value,match", [
    ("format", "other", "format"),
    ("version", 99, "version"),
    ("device", "", "device"),
    ("precision", "int4", "precision"),
    ("resolution", 0, "resolution"),
    ("lut_statistic", "min", "lut_statistic"),
    ("entries", {}, "entries is empty"),
    ("overhead.p50_ms", float("nan"), "overhead.p50_ms"),
    ("overhead.p25_ms", KeyError, "overhead.p25_ms"),
    ("provenance.date", KeyError, "provenance.date"),
    ("correction.features", ["magic"], "correction.features"),
    ("correction.p50", [1.0], "one coefficient per feature"),
    ("correction.p90_ratio", 0.5, "p90_ratio"),
    ("fidelity.within_10pct", "most", "within_10pct"),
    ("space.teacher", {"stages": [[1]]}, "space.teacher"),
    ("entries.[0].p25_ms", -1.0, "p25_ms"),
    ("entries.[0].kind", "conv", "unknown kind"),
    ("entries.[0].out_ch", 999, "describes"),
])
def test_malformed_tables_are_one_line_errors(path, value, match):
    with pytest.raises(DassEdgeError, match=match) as e:
        LatencyTable(_break(path, value))
    assert "\n" not in str(e.value) and "dass-edge profile" in str(e.value)


def test_load_table_prefers_user_store_and_newest(tmp_path):
    store = tmp_path / "tables"
    store.mkdir()
    (store / "old.json").write_text(json.dumps(synthetic_table(date="2024-01-01T00:00:00+00:00")))
    newer = synthetic_table(date="2025-01-01T00:00:00+00:00")
    newer["provenance"]["measured_on"] = "newer machine"
    (store / "new.json").write_text(json.dumps(newer))
    table = load_table("cpu", 32, TEACHER, this_machine=False)
    assert table.provenance["measured_on"] == "newer machine" and table.path == store / "new.json"
    assert [src for _, src in find_tables("cpu")][:2] == ["user", "user"]


def test_load_table_errors_name_the_command(tmp_path):
    with pytest.raises(DassEdgeError, match=r"no latency table for device 'jetson-orin-nano' at 32x32.*"
                                            r"dass-edge profile --device jetson-orin-nano --resolution 32"):
        load_table("jetson-orin-nano", 32)
    store = tmp_path / "tables"
    store.mkdir()
    (store / "t.json").write_text(json.dumps(synthetic_table()))
    with pytest.raises(DassEdgeError, match="--resolution 64"):
        load_table("cpu", 64, TEACHER)
    wide = ModelSpec.uniform((8, 8, 8, 8), (1, 1, 1, 1), num_classes=3)
    with pytest.raises(DassEdgeError, match="covering this teacher's search space.*--teacher"):
        load_table("cpu", 32, wide)
    with pytest.raises(DassEdgeError, match="unknown device"):
        load_table("tpu", 32)


def test_cpu_table_of_another_machine_is_not_presented_as_this_one(tmp_path):
    from dass_edge.latency.profiles import load_profile
    from dass_edge.latency.provenance import this_machine_label

    store = tmp_path / "tables"
    store.mkdir()
    other = synthetic_table(date="2030-01-01T00:00:00+00:00")
    other["provenance"]["measured_on"] = "Some Other CPU (8 cores)"
    (store / "other.json").write_text(json.dumps(other))
    expected = r"measured on this machine .*Some Other CPU.*dass-edge profile --device cpu"
    with pytest.raises(DassEdgeError, match=expected):
        load_table("cpu", 32, TEACHER, this_machine=True)
    mine = synthetic_table(date="2020-01-01T00:00:00+00:00")
    mine["provenance"]["measured_on"] = this_machine_label(load_profile("cpu"))
    (store / "mine.json").write_text(json.dumps(mine))
    assert load_table("cpu", 32, TEACHER).path == store / "mine.json"  # older, but this machine's


def test_malformed_file_in_store_is_named(tmp_path):
    store = tmp_path / "tables"
    store.mkdir()
    (store / "bad.json").write_text("{not json")
    with pytest.raises(DassEdgeError, match="bad.json is not valid JSON"):
        load_table("cpu", 32)
    (store / "bad.json").write_text(json.dumps({**synthetic_table(), "entries": []}))
    with pytest.raises(DassEdgeError, match="bad.json is malformed"):
        load_table("cpu", 32)


def test_shipped_tables_are_valid_measured_and_cover_the_default_space():
    shipped = sorted(tables_dir().glob("*.json"))
    assert shipped, "the measured CPU table must ship with the package"
    names = {p.stem.split("_")[0] for p in shipped}
    assert names <= {"cpu"}, "only devices that were actually measured may ship tables"
    for path in shipped:
        table = LatencyTable.load(path)
        fid = table.fidelity
        assert fid["students"] >= 30 and fid["method"] == "leave-one-out"
        assert 0 <= fid["within_10pct"] <= 1 and -1 <= fid["spearman"] <= 1
        assert table.provenance["backend"] == "onnxruntime" and table.provenance["threads"] == 1
        assert len(fid["samples"]) == fid["students"]
    table = load_table("cpu", 32, default_teacher_spec(), this_machine=False)
    space = SearchSpace(default_teacher_spec().replace(resolution=32))
    assert not table.missing(space)
    for arch in space.sample_many(50, seed=0):
        p = table.predict(space.to_spec(arch))
        assert 0 < p["p50_ms"] <= p["p90_ms"]


def test_table_is_not_mutated_by_loading():
    data = synthetic_table()
    before = copy.deepcopy(data)
    LatencyTable(data)
    assert data == before

"""``profile_device`` / ``dass-edge profile`` / ``dass-edge devices`` / ``measure_onnx`` on a tiny space."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import run_cli

from dass_edge.errors import DassEdgeError
from dass_edge.latency import LatencyTable, load_table, measure_onnx, profile_device, space_entries
from dass_edge.latency.artifacts import StudentArtifact
from dass_edge.latency.table import FORMAT
from dass_edge.space import SearchSpace
from dass_edge.spec import ModelSpec

#: 28 entries: widths {2, 3, 4} per stage, depth 1 each.
TINY_TEACHER = ModelSpec.uniform((4, 4, 4, 4), (1, 1, 1, 1), num_classes=3, resolution=32)


def tiny_profile(folder: Path, name: str = "tiny", **changes) -> Path:
    """A quick onnxruntime CPU profile (few calls per session) written as ``folder/name.yaml``."""
    doc = {"name": name, "description": "quick test profile", "backend": "onnxruntime", "precision": "fp32",
           "batch": 1, "threads": 1, "resolutions": [16, 32],
           "measurement": {"warmup_s": 0.0, "iterations": 3, "sessions": 2, "fidelity_students": 5,
                           "fidelity_sessions": 3},
           "fidelity_target": {"remeasure_s": 0}}  # judge only: a few calls per session miss any real target
    for key, value in changes.items():
        (doc["measurement"] if key in ("warmup_s", "iterations", "sessions", "fidelity_students",
                                       "fidelity_sessions", "nice") else doc)[key] = value
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("DASS_EDGE_TABLES", str(tmp_path / "tables"))
    monkeypatch.setenv("DASS_EDGE_PROFILES", str(tmp_path / "profiles"))


def _tables(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "tables").glob("*.json"))


def test_profile_writes_a_complete_validated_table(tmp_path):
    profile = tiny_profile(tmp_path / "profiles")
    calls: list[tuple[str, int, int]] = []
    result = profile_device(str(profile), TINY_TEACHER, progress=lambda *a: calls.append(a))
    space = SearchSpace(TINY_TEACHER)
    assert result.path == _tables(tmp_path)[0]
    data = json.loads(result.path.read_text())
    assert data["format"] == FORMAT and data["device"] == "tiny" and data["resolution"] == 32
    assert set(data["entries"]) == {e.key for e in space_entries(space)} and len(data["entries"]) == 28
    for e in data["entries"].values():
        assert e["sessions"] == 2 and 1 <= e["sessions_kept"] <= 2 and e["count"] == 3 * e["sessions_kept"]
        assert 0 <= e["p25_ms"] <= e["p90_ms"] and e["raw_p50_ms"] >= e["p50_ms"]  # overhead removed
    prov = data["provenance"]
    assert prov["host"] == "local" and prov["backend_version"] != "unknown" and prov["threads"] == 1
    assert prov["device"]["cpu"]["logical_cores"] >= 1 and prov["measured_on"]
    assert prov["settings"]["sessions"] == 2 and prov["settings"]["iterations"] == 3
    fid = data["fidelity"]
    assert fid["students"] == 5 and len(fid["samples"]) == 5 and fid["method"] == "leave-one-out"
    assert {"within_10pct", "rmspe", "spearman", "uncorrected", "p90", "all_sessions", "session_spread"} <= set(fid)
    assert all(s["p50_all_sessions_ms"] >= s["p50_ms"] for s in fid["samples"])
    assert data["correction"]["features"] == ["lut_ms", "const"]  # 5 students: no weights term
    assert result.measured == 1 * 3 + 28 * 2 + 5 * 3 and result.reused == 0
    phases = {c[0] for c in calls}
    assert phases == {"export", "measure"} and calls[-1][1] == calls[-1][2]
    assert not (tmp_path / "tables" / ".work").exists() or not any((tmp_path / "tables" / ".work").iterdir())
    table = load_table("tiny", 32, TINY_TEACHER)  # found in the store by device name
    p = table.predict(space.to_spec(space.teacher_arch()))
    assert 0 < p["p50_ms"] <= p["p90_ms"]


def test_interrupted_run_resumes_measuring_only_what_is_missing(tmp_path):
    profile = tiny_profile(tmp_path / "profiles")
    seen = {"n": 0}

    def stop_after_20(phase, done, total):
        if phase == "measure" and done > 0:
            seen["n"] += 1
            if seen["n"] == 20:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        profile_device(str(profile), TINY_TEACHER, progress=stop_after_20)
    assert _tables(tmp_path) == []  # no partial table
    result = profile_device(str(profile), TINY_TEACHER)
    total = 1 * 3 + 28 * 2 + 5 * 3
    assert (result.reused, result.measured) == (20, total - 20)
    assert result.table.provenance["resumed_pairs"] == 20
    assert len(_tables(tmp_path)) == 1


def test_failures_leave_no_table(tmp_path):
    bad_provider = tiny_profile(tmp_path / "profiles", name="nogpu", providers=["CUDAExecutionProvider"])
    if "CUDAExecutionProvider" in __import__("onnxruntime").get_available_providers():
        pytest.skip("this machine has CUDA")
    with pytest.raises(DassEdgeError, match="cannot be measured here.*CUDAExecutionProvider"):
        profile_device(str(bad_provider), TINY_TEACHER)
    with pytest.raises(DassEdgeError, match="resolutions 16, 32, not 24"):
        profile_device(str(tiny_profile(tmp_path / "profiles")), TINY_TEACHER, resolution=24)
    with pytest.raises(DassEdgeError, match="not a Jetson"):
        profile_device("jetson", TINY_TEACHER)
    with pytest.raises(DassEdgeError, match="unknown device"):
        profile_device("no-such-device", TINY_TEACHER)
    assert _tables(tmp_path) == []


def test_out_and_resolution_and_free_last_stage(tmp_path):
    profile = tiny_profile(tmp_path / "profiles")
    out = tmp_path / "elsewhere" / "t.json"
    result = profile_device(str(profile), TINY_TEACHER, resolution=16, out=out, fixed_last_stage=False, students=0)
    table = LatencyTable.load(out)
    assert table.resolution == 16 and not table.data["space"]["fixed_last_stage"]
    assert len(table.entries) == len(space_entries(SearchSpace(TINY_TEACHER.replace(resolution=16), False)))
    assert table.fidelity["students"] == 0 and result.path == out and _tables(tmp_path) == []


def test_keep_records_keeps_every_session_with_its_time(tmp_path):
    profile = tiny_profile(tmp_path / "profiles")
    kept = tmp_path / "raw" / "records.jsonl"
    profile_device(str(profile), TINY_TEACHER, resolution=16, students=2, keep_records=kept)
    recs = [json.loads(line) for line in kept.read_text().splitlines()]
    table = load_table("tiny", 16, TINY_TEACHER)
    sessions = yaml.safe_load(profile.read_text())["measurement"]
    # every entry (and the overhead model) with its sessions, each student with its fidelity sessions
    ids = {r["id"] for r in recs}
    assert {"student/0", "student/1"} <= ids and len(ids) >= len(table.entries)
    per_student = [r for r in recs if r["id"] == "student/0"]
    assert len(per_student) >= sessions["fidelity_sessions"]
    times = [r["t"] for r in recs]
    assert all(t > 1.7e9 for t in times) and max(times) - min(times) < 600
    assert all(len(r["us"]) == sessions["iterations"] and min(r["us"]) > 0 for r in recs)


def test_measure_onnx_uses_the_profile(tmp_path):
    profile = tiny_profile(tmp_path / "profiles")
    path = StudentArtifact(TINY_TEACHER, 1, "onnxruntime", "fp32")(tmp_path / "s.onnx")
    got = measure_onnx(path, str(profile), sessions=3, iterations=4)
    assert got["sessions"] == 3 and got["count"] == 4 * got["sessions_kept"]
    assert 0 < got["p50_ms"] <= got["p50_all_sessions_ms"]
    assert got["backend"] == "onnxruntime" and got["device"] == "tiny"
    with pytest.raises(DassEdgeError, match="does not exist"):
        measure_onnx(tmp_path / "missing.onnx", "cpu")
    with pytest.raises(DassEdgeError, match="torch backend"):
        measure_onnx(path, "cpu-torch")


@pytest.mark.slow
def test_torch_backend_profile(tmp_path):
    profile = tiny_profile(tmp_path / "profiles", name="tt", backend="torch", fidelity_students=4,
                           fidelity_sessions=2, resolutions=[16])
    teacher = ModelSpec.uniform((2, 2, 2, 2), (1, 1, 1, 1), num_classes=3, resolution=16)
    result = profile_device(str(profile), teacher)
    assert result.table.backend == "torch" and len(result.table.entries) == len(space_entries(SearchSpace(teacher)))
    assert result.table.provenance["backend_version"] != "unknown"


# -- CLI -------------------------------------------------------------------------------------------
def test_cli_profile_then_devices(tmp_path, capsys):
    tiny_profile(tmp_path / "profiles")
    from dass_edge.models import build_model, save_checkpoint

    ckpt = save_checkpoint(tmp_path / "t.safetensors", build_model(TINY_TEACHER))
    code, out, err = run_cli(["profile", "--device", "tiny", "--teacher", str(ckpt), "--students", "4", "--json"],
                             capsys)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["entries"] == 28 and summary["fidelity"]["students"] == 4 and Path(summary["path"]).exists()
    code, out, err = run_cli(["devices", "--json"], capsys)
    assert code == 0, err
    rows = {r["name"]: r for r in json.loads(out)}
    assert {"cpu", "gpu", "jetson-orin-nano", "jetson-agx-orin", "jetson-xavier-nx", "tiny"} <= set(rows)
    tiny = rows["tiny"]["table"]
    assert {"measured_on", "date", "entries", "within_10pct", "spearman"} <= set(tiny)
    assert tiny["entries"] == 28 and tiny["source"] == "user" and rows["tiny"]["backend"] == "onnxruntime"
    assert all(rows[j]["table"] is None for j in ("jetson-orin-nano", "jetson-agx-orin", "jetson-xavier-nx"))
    code, out, _ = run_cli(["devices"], capsys)
    assert code == 0 and "tiny" in out and "dass-edge profile --device NAME" in out


@pytest.mark.parametrize("args,match", [
    (["profile", "--device", "tpu-v9"], "unknown device 'tpu-v9'"),
    (["profile", "--device", "cpu", "--resolution", "33"], "resolutions"),
    (["profile", "--device", "cpu", "--host", "-oProxyCommand=x"], "not of the form user@host"),
    (["profile", "--device", "cpu", "--host", "me@host:99999"], "port"),
    (["profile", "--device", "cpu", "--teacher", "nope.safetensors"], "no such checkpoint"),
    (["profile", "--device", "cpu", "--few-shot", "5", "--keep-records", "r.jsonl"], "--keep-records"),
])
def test_cli_bad_input_is_one_line_exit_2(args, match, capsys, tmp_path):
    code, out, err = run_cli(args, capsys)
    assert code == 2 and err.startswith("error: ") and match in err and err.count("\n") == 1
    assert _tables(tmp_path) == []


def test_cli_malformed_table_is_one_line(tmp_path, capsys):
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "broken.json").write_text('{"format": "dass-edge/latency-table"}')
    code, _, err = run_cli(["devices", "--json"], capsys)
    assert code == 2 and "broken.json is malformed" in err and err.count("\n") == 1


@pytest.mark.slow
def test_killed_cli_run_resumes(tmp_path):
    """SIGKILL a real ``dass-edge profile`` mid-measurement; the rerun measures only what is missing."""
    tiny_profile(tmp_path / "profiles", iterations=5, sessions=2)
    env = {**os.environ, "DASS_EDGE_TABLES": str(tmp_path / "tables"), "DASS_EDGE_PROFILES": str(tmp_path / "profiles")}
    cmd = [sys.executable, "-m", "dass_edge.cli", "profile", "--device", "tiny", "--teacher", "resnet_edge_s",
           "--resolution", "16", "--students", "4", "--json"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    journal = None
    while time.time() < deadline:
        found = list((tmp_path / "tables" / ".work").glob("*/records.jsonl"))
        if found and len(found[0].read_text().splitlines()) >= 50:
            journal = found[0]
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert journal is not None, "the run never got going"
    done_before = len([ln for ln in journal.read_text().splitlines() if ln.endswith("}")])
    assert _tables(tmp_path) == []
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["resumed"] == done_before >= 50
    # every block twice, the overhead model and 4 students 3 times each
    assert summary["measured"] + summary["resumed"] == summary["entries"] * 2 + (1 + 4) * 3


def test_journal_survives_a_torn_last_line(tmp_path):
    from dass_edge.latency.profiler import _Journal

    path = tmp_path / "records.jsonl"
    path.write_text('{"id": "a", "round": 0, "us": [1.0]}\n{"id": "b", "round": 0, "u')  # killed mid-write
    journal = _Journal(path)
    assert journal.size == 1
    journal.add({"id": "b", "round": 0, "us": [2.0], "nice": None})
    journal.close()
    again = _Journal(path)
    assert again.size == 2 and again.rounds["b"][0] == [2.0]
    again.close()

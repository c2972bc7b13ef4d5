"""``dass-edge search`` on the command line: bad input is one line and exit code 2 with nothing written.

The happy path needs the DaSS predictor (``dass_edge.predictor.scoring``); until it is wired in, the
CLI happy path runs with the toy scorer of ``test_search_run`` swapped in for the predictor loader
(the search, the latency table and the run folder are real), and only where this machine has its
own CPU table (the default device never uses another machine's numbers).
"""

from __future__ import annotations

import json

import pytest
from conftest import run_cli

from dass_edge.commands._common import LOG_WIDTH, console
from dass_edge.errors import DassEdgeError
from dass_edge.latency import default_teacher_spec, load_table
from dass_edge.space import Arch


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Run in an empty folder (default run folders go to ./runs) with an empty user table store."""
    monkeypatch.setenv("DASS_EDGE_TABLES", str(tmp_path / "user-tables"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def _has_table_here() -> bool:
    try:
        load_table("cpu", 32, default_teacher_spec())
    except DassEdgeError:
        return False
    return True


needs_table_here = pytest.mark.skipif(not _has_table_here(), reason="this machine has no CPU latency table for the "
                                      "demo teacher (the shipped one was measured elsewhere)")


def test_help_lists_search(capsys):
    code, out, _ = run_cli(["--help"], capsys)
    assert code == 0 and "search" in out
    code, out, _ = run_cli(["search", "--help"], capsys)
    assert code == 0
    for flag in ("--latency-ms", "--device", "--teacher", "--task", "--data", "--top-k", "--params-max", "--algo",
                 "--budget-evals", "--seed", "--out", "--predictor", "--json"):
        assert flag in out, flag


@pytest.mark.parametrize("args, message", [
    (["--latency-ms", "0"], "--latency-ms must be a positive"),
    (["--latency-ms", "-2"], "--latency-ms must be a positive"),
    (["--latency-ms", "0.3", "--top-k", "0"], "--top-k must be >= 1"),
    (["--latency-ms", "0.3", "--algo", "annealing"], "unknown search algorithm 'annealing'"),
    (["--latency-ms", "0.3", "--task", "shapes", "--data", "."], "either --task or --data"),
    (["--latency-ms", "0.3", "--task", "textures"], "the teacher has 26 classes but task textures has 12"),
    (["--latency-ms", "0.3", "--device", "no-such-device"], "unknown device 'no-such-device'"),
    (["--latency-ms", "0.3", "--device", "jetson-orin-nano"], "dass-edge profile --device jetson-orin-nano"),
    (["--latency-ms", "0.3", "--out", "/proc/no/such/run"], "cannot create --out /proc/no/such/run"),
    (["--latency-ms", "0.3", "--teacher", "missing.safetensors"], "does not exist"),
    (["--latency-ms", "fast"], "--latency-ms"),
    ([], "--latency-ms"),
])
def test_bad_input_is_one_line_and_writes_nothing(isolated, capsys, args, message):
    code, out, err = run_cli(["search", *args], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert out == "" and not list(isolated.iterdir())


@needs_table_here
def test_infeasible_budget_names_the_fastest_student(isolated, capsys):
    code, _, err = run_cli(["search", "--latency-ms", "0.01"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "no student fits 0.01 ms on cpu: the fastest is 0." in err and "(d1-1-1-1_w" in err
    assert not list(isolated.iterdir())


@needs_table_here
def test_search_json_and_table(isolated, capsys):
    code, out, err = run_cli(["search", "--latency-ms", "0.4", "--budget-evals", "200", "--top-k", "2", "--out",
                              "runs/a", "--json", "--refine", "0"], capsys)  # refinement: test_search_refine.py
    assert code == 0, err
    record = json.loads(out)
    for key in ("budget_ms", "device", "table", "predictor", "evaluated", "seconds", "top"):
        assert key in record, key
    assert record["budget_ms"] == 0.4 and record["device"] == "cpu" and len(record["top"]) == 2
    for p in record["top"]:
        assert {"arch", "predicted_acc", "latency_ms", "params", "flops"} <= set(p) and p["latency_ms"] <= 0.4
        assert 0.0 < p["predicted_acc"] < 100.0
    assert record["predictor"]["path"].endswith("predictor.safetensors") and record["predictor"]["members"] >= 1
    saved = json.loads((isolated / "runs" / "a" / "search.json").read_text())
    assert saved == record
    assert Arch.from_dict(json.loads((isolated / "runs" / "a" / "rank1" / "config.json").read_text())["arch"]) \
        == Arch.from_dict(record["top"][0]["arch"])

    code, out, err = run_cli(["search", "--latency-ms", "5", "--budget-evals", "100", "--top-k", "1", "--refine", "0"],
                             capsys)
    assert code == 0, err
    runs = sorted(p.name for p in (isolated / "runs").iterdir())
    assert len(runs) == 2 and runs[0] == "a" and runs[1].startswith("search-")
    assert f"dass-edge distill runs/{runs[1]} --rank 1" in out and "does not bind" in out
    assert "rank" in out and "teacher" in out
    key = json.loads((isolated / "runs" / runs[1] / "search.json").read_text())["top"][0]["arch_key"]
    if console.width >= LOG_WIDTH:  # piped (not run with -s in a narrow terminal): logs keep the key whole
        assert any(key in line for line in out.splitlines()), out

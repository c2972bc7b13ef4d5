"""benchmarks/bench_fewshot_worksplit.py: the candidate columns, the rules, and a stored job rescored exactly."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from benchmarks.bench_fewshot_worksplit import candidate_columns, choose, passes, rescore
from dass_edge.space import block_macs

JOBS = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "fewshot_jobs"


@pytest.fixture(scope="module")
def source():
    from dass_edge.latency import LatencyTable

    return LatencyTable.load(JOBS / "s13a_source.json")


@pytest.mark.parametrize(("name", "added"), [
    ("worksplit", ("src*log2mmacs:block",)),
    ("log2res2", ("src*log2res2:block",)),
    # one scale per stage: the demo teacher's blocks end at 32, 16, 8 and 4 px (sorted as strings)
    ("stage", ("src@r16:block", "src@r32:block", "src@r4:block", "src@r8:block")),
])
def test_candidate_columns_add_theirs_before_the_constant_and_restore_the_transfer(source, name, added):
    import dass_edge.latency.fewshot as fs
    from dass_edge.latency.entries import Entry

    before = fs.COLUMNS
    with candidate_columns(name, source):
        assert fs.COLUMNS == before[:-1] + added + ("const",)
        block = Entry("block", 32, 64, 2, 16)  # a stage-3 block: 16 px in, 8 px out
        cols = fs.entry_columns(block, 2.0)
        assert {c: cols[c] for c in added if c in cols} == {
            "worksplit": {"src*log2mmacs:block": pytest.approx(2.0 * math.log2(block_macs(32, 64, 2, 16, True) / 1e6))},
            "log2res2": {"src*log2res2:block": pytest.approx(2.0 * 16.0)},
            "stage": {"src@r8:block": 2.0}}[name]
    assert fs.COLUMNS == before and not set(added) & set(fs.COLUMNS)


def m(cur, cand, met_cur=0, met_cand=0, name="candidate"):
    return {"current": (*cur, met_cur), name: (*cand, met_cand)}


def test_the_rule_needs_a_rise_on_two_threads_and_no_loss_elsewhere():
    ok = {"threads2": m((0.9, 0.93), (0.9, 0.95)), "int8": m((0.97, 0.955), (0.95, 0.951))}
    assert passes(ok, "candidate", 0.01)
    assert not passes({**ok, "threads2": m((0.9, 0.93), (0.9, 0.935))}, "candidate", 0.01)  # rise too small
    assert not passes({**ok, "int8": m((0.97, 0.955), (0.93, 0.96))}, "candidate", 0.01)  # within-10% -4 points
    assert not passes({**ok, "torch": m((1.0, 0.997), (1.0, 0.99))}, "candidate", 0.01)  # Spearman -0.007
    assert not passes({"int8": ok["int8"]}, "candidate", 0.01)  # no 2-thread job
    fewer = {**ok, "threads2": m((0.9, 0.93), (0.9, 0.95), met_cur=2, met_cand=1)}
    assert passes(fewer, "candidate", 0.01) and not passes(fewer, "candidate", 0.01, keep_met=True)


def test_session_15_choice_prefers_the_one_column_candidate_within_0002():
    def means(stage, log2res2):
        return {"threads2": {"current": (0.9, 0.93, 1), "stage": (0.9, stage, 1), "log2res2": (0.9, log2res2, 1)}}

    assert choose(means(0.945, 0.944), ["stage", "log2res2"]) == "log2res2"
    assert choose(means(0.950, 0.944), ["stage", "log2res2"]) == "stage"
    assert choose(means(0.935, 0.936), ["stage", "log2res2"]) is None


def test_a_stored_job_rescored_with_the_current_columns_reproduces_its_table():
    row, = rescore([(JOBS / "s13a_source.json", JOBS / "s13a_int8.json")], ["worksplit", "stage"])
    assert row["target"] == "int8"
    assert row["current"]["spearman"] == pytest.approx(row["stored"], abs=1e-12)
    assert row["worksplit"]["spearman"] != row["current"]["spearman"]
    assert row["stage"]["spearman"] != row["current"]["spearman"]


def test_the_ceiling_fits_the_held_out_students_and_the_transfer_does_not():
    """Held-out medians 15% above what the job measured: the transfer (fitted on the fit students only) misses them
    all by more than 10%; the in-sample ceiling, whose fit includes them, lands most within 10%."""
    import copy
    import json

    from benchmarks.bench_fewshot_worksplit import ceiling, score
    from dass_edge.latency import LatencyTable

    source = LatencyTable.load(JOBS / "s13a_source.json")
    table = json.loads((JOBS / "s13a_torch.json").read_text())
    assert score(source, table)["within_10pct"] == 1.0 and ceiling(source, table)["within_10pct"] == 1.0
    slower = copy.deepcopy(table)
    for s in slower["fidelity"]["samples"]:
        s["p50_ms"] *= 1.15
    assert score(source, slower)["within_10pct"] == 0.0
    assert ceiling(source, slower)["within_10pct"] >= 0.8

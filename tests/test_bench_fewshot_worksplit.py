"""benchmarks/bench_fewshot_worksplit.py: the candidate column, the rule, and a stored job rescored exactly."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.bench_fewshot_worksplit import CANDIDATE, candidate_columns, passes, rescore

JOBS = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "fewshot_jobs"


def test_candidate_columns_add_one_column_and_restore_the_transfer():
    import dass_edge.latency.fewshot as fs

    before = fs.COLUMNS
    with candidate_columns():
        assert fs.COLUMNS == before[:-1] + (CANDIDATE, "const")
    assert fs.COLUMNS == before and CANDIDATE not in fs.COLUMNS


def test_the_rule_needs_a_rise_on_two_threads_and_no_loss_elsewhere():
    def m(cur, cand):
        return {"current": cur, "candidate": cand}

    ok = {"threads2": m((0.9, 0.93), (0.9, 0.95)), "int8": m((0.97, 0.955), (0.95, 0.951))}
    assert passes(ok, 0.01)
    assert not passes({**ok, "threads2": m((0.9, 0.93), (0.9, 0.935))}, 0.01)  # rise too small
    assert not passes({**ok, "int8": m((0.97, 0.955), (0.93, 0.96))}, 0.01)  # within-10% falls by 4 points
    assert not passes({**ok, "torch": m((1.0, 0.997), (1.0, 0.99))}, 0.01)  # Spearman falls by 0.007
    assert not passes({"int8": ok["int8"]}, 0.01)  # no 2-thread job


def test_a_stored_job_rescored_with_the_current_columns_reproduces_its_table():
    row, = rescore([(JOBS / "s13a_source.json", JOBS / "s13a_int8.json")])
    assert row["target"] == "int8"
    assert row["current"]["spearman"] == pytest.approx(row["stored"], abs=1e-12)
    assert row["candidate"]["spearman"] != row["current"]["spearman"]

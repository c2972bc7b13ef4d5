"""benchmarks/bench_threads2_full.py: the report counts the tables that meet the few-shot targets."""

from benchmarks.bench_fewshot_spin import met
from benchmarks.bench_threads2_full import report


def test_report_counts_tables_meeting_both_targets():
    rows = [{"profile": 1, "within_10pct": 0.9, "spearman": 0.95, "rmspe": 0.05, "seconds": 50.0},
            {"profile": 2, "within_10pct": 0.97, "spearman": 0.949, "rmspe": 0.04, "seconds": None},
            {"profile": 3, "within_10pct": 0.87, "spearman": 0.99, "rmspe": 0.06, "seconds": 60.0}]
    for r in rows:
        r["met"] = met(r)
    text = report(rows)
    assert [r["met"] for r in rows] == [True, False, False]
    assert "1 of 3 fully measured 2-thread tables meet" in text
    assert "| 2 | 97% | 0.949 | 4.0% | no | (read back) |" in text

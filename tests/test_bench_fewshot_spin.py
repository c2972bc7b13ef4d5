"""benchmarks/bench_fewshot_spin.py: job-to-job agreement and the report's counts on hand-made jobs."""

from __future__ import annotations

import pytest

from benchmarks.bench_fewshot_spin import agreement, report


def _job(pair: int, spin: str, heldout: list[float], within: float = 1.0, rho: float = 0.99) -> dict:
    return {"pair": pair, "spin": spin, "within_10pct": within, "spearman": rho, "rmspe": 0.03, "seconds": 20.0,
            "heldout_p50_ms": heldout, "fit_p50_ms": []}


def test_agreement_compares_every_two_jobs_of_one_setting():
    jobs = [_job(0, "on", [1.0, 2.0, 3.0, 4.0]), _job(1, "on", [1.0, 3.0, 2.0, 4.4]),
            _job(0, "off", [1.0, 2.0, 3.0, 4.0]), _job(1, "off", [1.1, 2.2, 3.3, 4.4])]
    rhos, gaps = agreement(jobs, "on")
    assert rhos == [pytest.approx(0.8)]  # one swapped pair of four
    assert gaps == [pytest.approx((1 / 11 + 1 / 3) / 2)]  # |ratio - 1|: 0, 1/3, 1/2, 1/11: the middle two
    rhos, gaps = agreement(jobs, "off")
    assert rhos == [pytest.approx(1.0)] and gaps == [pytest.approx(1 / 11)]


def test_report_counts_jobs_meeting_both_targets_and_the_level():
    jobs = [_job(0, "on", [1.0, 2.0, 3.0], within=1.0, rho=0.96), _job(1, "on", [1.0, 2.0, 3.0], within=0.3, rho=0.87),
            _job(0, "off", [1.2, 2.4, 3.6], within=0.9, rho=0.95), _job(1, "off", [1.2, 2.4, 3.6], within=0.93)]
    text = report(jobs, 46.0)
    assert "| on | 1 of 2 | 1.00 |" in text
    assert "| off | 2 of 2 | 1.20 |" in text
    assert "46 s" in text


def test_decision_adds_the_key_only_when_off_meets_every_job_and_on_misses_one():
    from benchmarks.bench_fewshot_spin import decision

    good, bad = {"within_10pct": 0.93, "spearman": 0.96}, {"within_10pct": 0.93, "spearman": 0.94}
    jobs = [{"spin": "off", **good}, {"spin": "off", **good}, {"spin": "on", **good}, {"spin": "on", **bad}]
    assert "get a `spin` key" in decision(jobs)
    assert "nothing changes" in decision([{"spin": "on", **good}, *jobs[:2]])  # on met everywhere too
    assert "in 1 of 2 jobs, on in 1 of 2" in decision([{"spin": "off", **bad}, *jobs[1:]])

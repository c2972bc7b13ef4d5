"""Timing summaries, the relative-error fit, leave-one-out scoring and the correction."""

from __future__ import annotations

import numpy as np
import pytest

from dass_edge.latency.fidelity import correction_features, fit_correction
from dass_edge.latency.stats import fidelity_metrics, fit_relative, loo_predictions, summarize_rounds


def test_summarize_rounds_takes_the_undisturbed_median():
    s = summarize_rounds([[100, 200, 300], [1000, 1000, 5000], [150, 150, 150]])  # microseconds
    # session medians 0.2, 1.0, 0.15 ms: only the 0.15 ms session is within 1.1x the fastest, so the disturbed
    # ones cannot pull the undisturbed statistics up; the all-sessions figures still show them
    assert s["p50_ms"] == pytest.approx(0.15) and s["p50_all_sessions_ms"] == pytest.approx(0.2)
    assert s["session_spread"] == pytest.approx(1.0 / 0.15) and s["p90_ms"] >= 1.0
    assert s["count"] == 3 and s["sessions"] == 3 and s["sessions_kept"] == 1
    assert s["mean_ms"] == pytest.approx(0.15) and s["p25_ms"] == pytest.approx(0.15)
    two = summarize_rounds([[100, 101, 102], [105, 106, 107], [200, 200, 200]])
    # medians 0.101, 0.106 (within 1.1x of 0.101) and 0.2 (left out): lower quartile of the two kept
    assert two["sessions_kept"] == 2 and two["p50_ms"] == pytest.approx(0.101 + 0.25 * 0.005)
    assert two["mean_ms"] == pytest.approx(np.mean([100, 101, 102, 105, 106, 107]) / 1e3)
    calm = summarize_rounds([[100, 101, 102]] * 5)
    assert calm["p50_ms"] == calm["p50_all_sessions_ms"] == pytest.approx(0.101) and calm["session_spread"] == 1
    assert calm["sessions_kept"] == 5 and calm["count"] == 15
    with pytest.raises(ValueError):
        summarize_rounds([[]])


def test_fit_relative_recovers_an_exact_linear_law():
    rng = np.random.default_rng(0)
    x = np.c_[rng.uniform(0.2, 2.0, 20), rng.uniform(0, 3, 20), np.ones(20)]
    beta = np.array([1.2, 0.05, -0.03])
    y = x @ beta
    np.testing.assert_allclose(fit_relative(x, y), beta, rtol=1e-9)
    np.testing.assert_allclose(loo_predictions(x, y), y, rtol=1e-9)


def test_relative_fit_weights_small_models_like_big_ones():
    x = np.c_[[0.1, 0.2, 10.0, 20.0], np.ones(4)]
    y = np.array([0.1, 0.2, 11.0, 19.0])  # the big ones are off by 10% / -5%
    rel = np.abs(x @ fit_relative(x, y) / y - 1)
    assert rel[:2].max() < 0.1  # an absolute-error fit would sacrifice the small models


def test_fidelity_metrics():
    m = fidelity_metrics([1.05, 2.5, 2.9, 4.0], [1.0, 2.0, 3.0, 4.0])
    assert m["within_10pct"] == pytest.approx(0.75)
    assert m["rmspe"] == pytest.approx(np.sqrt(np.mean([0.05**2, 0.25**2, (0.1 / 3) ** 2, 0])))
    assert m["spearman"] == pytest.approx(1.0) and m["max_abs_pct_error"] == pytest.approx(0.25)
    assert fidelity_metrics([1, 1, 1], [1, 2, 3])["spearman"] is None  # undefined, not a crash


def _samples(n: int, noise: float = 0.0, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        lut, mb = rng.uniform(0.3, 0.7), rng.uniform(0.5, 2.5)
        p50 = (1.1 * lut + 0.05 * mb - 0.05) * (1 + noise * rng.standard_normal())
        out.append({"lut_ms": lut, "weights_mb": mb, "p50_ms": p50, "p90_ms": 1.3 * p50, "arch": {"n": 1}})
    return out


def test_fit_correction_recovers_the_law_and_scores_leave_one_out():
    corr, fid = fit_correction(_samples(30))
    assert corr["features"] == ["lut_ms", "weights_mb", "const"]
    np.testing.assert_allclose(corr["p50"], [1.1, 0.05, -0.05], atol=1e-9)
    assert corr["p90_ratio"] == pytest.approx(1.3)
    assert fid["within_10pct"] == 1.0 and fid["rmspe"] < 1e-9 and fid["method"] == "leave-one-out"
    assert fid["uncorrected"]["rmspe"] > 0.01 and len(fid["samples"]) == 30


def test_noisy_students_are_scored_honestly():
    _, fid = fit_correction(_samples(30, noise=0.2, seed=1))
    assert fid["within_10pct"] < 0.9 and fid["rmspe"] > 0.1  # leave-one-out does not hide noise


def test_fewer_students_fewer_parameters():
    assert correction_features(3) == ["lut_ms"]
    assert correction_features(5) == ["lut_ms", "const"]
    assert correction_features(30) == ["lut_ms", "weights_mb", "const"]
    corr, fid = fit_correction(_samples(2))
    assert corr["features"] == ["lut_ms"] and fid["method"] == "leave-one-out"
    corr, fid = fit_correction(_samples(1))
    assert fid["method"] == "in-sample"

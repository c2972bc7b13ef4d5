import pytest

from dass_edge.predictor.metrics import rank_metrics, top1_regret, top_k_overlap


def test_perfect_and_reversed_rankings():
    true = [50.0, 60.0, 55.0, 70.0, 65.0, 52.0, 58.0]
    assert rank_metrics(true, true) == {"spearman": 1.0, "kendall": 1.0, "top5": 1.0, "regret": 0.0}
    rev = rank_metrics([-v for v in true], true)
    assert rev["spearman"] == pytest.approx(-1.0) and rev["kendall"] == pytest.approx(-1.0)
    assert rev["regret"] == pytest.approx(70.0 - 50.0)


def test_topk_and_regret_by_hand():
    true = [10, 20, 30, 40, 50, 60]
    pred = [60, 50, 40, 30, 1, 2]  # picks index 0 (true 10); predicted top-5 = {0, 1, 2, 3, 5}
    assert top_k_overlap(pred, true, k=3) == 0.0  # {0, 1, 2} vs {3, 4, 5}
    assert top_k_overlap(pred, true, k=5) == pytest.approx(4 / 5)  # true top-5 = {1, 2, 3, 4, 5}
    assert top1_regret(pred, true) == 50


def test_constant_prediction_has_no_rank_signal():
    m = rank_metrics([1.0, 1.0, 1.0], [3.0, 1.0, 2.0])
    assert m["spearman"] == 0.0 and m["kendall"] == 0.0

import numpy as np
import pytest

from dass_edge.errors import DassEdgeError
from dass_edge.predictor.ensemble import combine_scores


def test_rank_average_of_two_scorers_matches_the_hand_computed_ranks():
    a = np.array([10.0, 30.0, 20.0, 40.0])  # ranks 0, 2, 1, 3 -> /3
    b = np.array([0.4, 0.1, 0.3, 0.2])  # ranks 3, 0, 2, 1 -> /3
    got = combine_scores([a, b])
    assert got == pytest.approx([1.5 / 3, 1.0 / 3, 1.5 / 3, 2.0 / 3])
    weighted = combine_scores([a, b], weights=[3, 1])  # (3 * rank_a + rank_b) / 4
    assert weighted == pytest.approx([0.75 / 3, 1.5 / 3, 1.25 / 3, 2.5 / 3])


def test_ties_share_the_average_rank_and_nan_ranks_last():
    got = combine_scores([np.array([1.0, 1.0, 2.0, np.nan])])
    assert got == pytest.approx([1.5 / 3, 1.5 / 3, 1.0, 0.0])


def test_z_average_is_scale_free_and_a_member_alone_keeps_its_order():
    a = np.array([1.0, 2.0, 4.0])
    got = combine_scores([a, 1000.0 * a + 7.0], method="z")
    z = (a - a.mean()) / a.std()
    assert got == pytest.approx(z)
    assert np.argsort(combine_scores([a], method="rank")).tolist() == [0, 1, 2]


@pytest.mark.parametrize("members, kwargs, match", [
    ([], {}, "at least one member"),
    ([np.zeros(3), np.zeros(4)], {}, "different numbers"),
    ([np.zeros(3)], {"weights": [1, 2]}, "weights"),
    ([np.zeros(3)], {"weights": [-1]}, "weights"),
    ([np.zeros(3)], {"method": "median"}, "unknown ensemble method"),
    ([np.array([1.0, np.inf, 0.0])], {"method": "z"}, "finite"),
])
def test_bad_ensembles_fail_with_one_clear_error(members, kwargs, match):
    with pytest.raises(DassEdgeError, match=match):
        combine_scores(members, **kwargs)

import pytest

from dass_edge.errors import DassEdgeError
from dass_edge.models import model_spec
from dass_edge.predictor.encoding import MAX_DEPTH, RELATIVE_ENCODING_LENGTH, encode_relative
from dass_edge.space import SearchSpace


@pytest.mark.parametrize("name", ["resnet_edge_s", "resnet_edge_m", "resnet34"])
def test_fixed_length_and_one_hot_groups(name):
    teacher = model_spec(name, num_classes=10, resolution=32)
    space = SearchSpace(teacher)
    for arch in space.sample_many(30, seed=0):
        vec = encode_relative(arch, teacher)
        assert len(vec) == RELATIVE_ENCODING_LENGTH
        assert sum(vec) == 4 + sum(arch.depths)  # one depth per stage, one width per block


def test_same_relative_student_of_different_teachers_encodes_identically():
    s, m = model_spec("resnet_edge_s", num_classes=10), model_spec("resnet_edge_m", num_classes=10)
    half_s = SearchSpace(s).smallest_arch()  # every width at m = 8/16, depth 1
    half_m = SearchSpace(m).smallest_arch()
    assert half_s.widths != half_m.widths
    assert encode_relative(half_s, s) == encode_relative(half_m, m)
    assert encode_relative(SearchSpace(s).teacher_arch(), s) != encode_relative(half_s, s)


def test_distinct_students_get_distinct_codes():
    teacher = model_spec("resnet_edge_s", num_classes=10)
    archs = SearchSpace(teacher).sample_many(200, seed=1)
    assert len({tuple(encode_relative(a, teacher)) for a in archs}) == 200


def test_too_deep_for_the_encoding():
    from dass_edge.space import Arch

    teacher = model_spec("resnet_edge_s", num_classes=10)
    deep = Arch((MAX_DEPTH + 1, 1, 1, 1), ((16,) * (MAX_DEPTH + 1), (32,), (64,), (128,)))
    with pytest.raises(DassEdgeError, match="outside 1..6"):
        encode_relative(deep, teacher)

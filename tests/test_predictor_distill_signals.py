import pytest
import torch

from dass_edge.models.remap import remap
from dass_edge.predictor.distill_signals import distill_signals, linear_cka
from dass_edge.space import SearchSpace
from tests.conftest import perturbed_teacher

pytestmark = pytest.mark.usefixtures("one_thread")


def test_linear_cka_is_one_for_the_same_or_rotated_features_and_low_for_unrelated():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(32, 6, generator=g)
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=g))
    assert linear_cka(a, a) == pytest.approx(1.0)
    assert linear_cka(a, a @ q * 3.0) == pytest.approx(1.0)  # invariant to rotation and scale
    assert linear_cka(a, torch.randn(32, 9, generator=g)) < 0.6


def test_the_teacher_against_itself_and_a_shrunk_student():
    teacher = perturbed_teacher(resolution=16).eval()
    x = torch.randn(16, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    kl, agree, cka = distill_signals(teacher, teacher, x)
    assert kl == pytest.approx(0.0, abs=1e-9) and agree == 1.0 and cka == pytest.approx(1.0)
    space = SearchSpace(teacher.spec, fixed_last_stage=False)
    small = min(space.sample_many(20, seed=0), key=lambda a: sum(map(sum, a.widths)))
    kl_s, agree_s, cka_s = distill_signals(teacher, remap(teacher, small, "first"), x)
    assert kl_s > 0 and 0 <= agree_s <= 1 and 0 <= cka_s < 1
    with torch.no_grad():  # reusing the teacher's outputs gives the same signals
        ft = teacher.forward_features(x)
        again = distill_signals(teacher, remap(teacher, small, "first"), x, (ft, teacher.forward_head(ft)))
    assert again == pytest.approx((kl_s, agree_s, cka_s))

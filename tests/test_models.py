import pytest
import torch

from dass_edge.errors import DassEdgeError
from dass_edge.models import create_model, list_models, remap
from dass_edge.models.remap import channel_indices
from dass_edge.space import Arch, SearchSpace


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_runs_forward_and_backward(name):
    model = create_model(name, num_classes=7, resolution=32)
    x = torch.randn(2, 3, 32, 32)
    out = model(x)
    assert out.shape == (2, 7)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("mode", ["first", "last", "uniform"])
def test_remapping_teacher_arch_gives_back_teacher(small_teacher, mode):
    space = SearchSpace(small_teacher.spec)
    student = remap(small_teacher, space.teacher_arch(), mode).eval()
    x = torch.randn(4, 3, 32, 32)
    assert torch.equal(student(x), small_teacher(x))
    for k, v in small_teacher.state_dict().items():
        assert torch.equal(student.state_dict()[k], v)


def test_remapped_tensors_are_teacher_slices(small_teacher):
    arch = Arch((2, 1, 2, 1), ((12, 10), (24,), (40, 64), (128,)))
    student = remap(small_teacher, arch, "first")
    t, s = small_teacher.state_dict(), student.state_dict()
    assert torch.equal(s["conv1.weight"], t["conv1.weight"][:12])
    assert torch.equal(s["layer1.0.conv1.weight"], t["layer1.0.conv1.weight"][:12, :12])
    assert torch.equal(s["layer1.1.conv1.weight"], t["layer1.1.conv1.weight"][:10, :12])
    assert torch.equal(s["layer1.1.conv2.weight"], t["layer1.1.conv2.weight"][:10, :10])
    assert torch.equal(s["layer2.0.conv1.weight"], t["layer2.0.conv1.weight"][:24, :10])
    assert torch.equal(s["layer2.0.downsample.0.weight"], t["layer2.0.downsample.0.weight"][:24, :10])
    assert torch.equal(s["layer3.1.bn2.running_var"], t["layer3.1.bn2.running_var"][:64])
    assert torch.equal(s["layer3.0.bn1.weight"], t["layer3.0.bn1.weight"][:40])
    assert torch.equal(s["fc.weight"], t["fc.weight"])
    assert "layer4.1.conv1.weight" not in s


def test_width_change_inside_stage_gets_identity_shortcut(small_teacher):
    arch = Arch((2, 1, 1, 1), ((12, 10), (32,), (64,), (128,)))
    student = remap(small_teacher, arch, "first").eval()
    proj = student.layer1[1].downsample
    assert proj is not None
    x = torch.randn(3, 12, 8, 8)
    # The shortcut keeps the first 10 of the 12 channels exactly (identity in teacher channel space).
    assert torch.allclose(proj(x), x[:, :10], atol=1e-6)


@pytest.mark.parametrize("mode, expected", [("first", [0, 1, 2]), ("last", [5, 6, 7]), ("uniform", [0, 4, 7])])
def test_channel_indices(mode, expected):
    assert channel_indices(mode, 8, 3).tolist() == expected


def test_last_mode_takes_last_channels(small_teacher):
    arch = Arch((1, 1, 1, 1), ((12,), (24,), (48,), (128,)))
    s = remap(small_teacher, arch, "last").state_dict()
    t = small_teacher.state_dict()
    assert torch.equal(s["layer2.0.conv1.weight"], t["layer2.0.conv1.weight"][8:][:, 4:])


def test_sliced_classifier_when_last_stage_searched(small_teacher):
    arch = Arch((1, 1, 1, 1), ((16,), (32,), (64,), (96,)))
    s = remap(small_teacher, arch, "first")
    assert s.fc.weight.shape == (10, 96)
    assert torch.equal(s.fc.weight, small_teacher.fc.weight[:, :96])


def test_remap_rejects_unknown_mode_and_oversized_arch(small_teacher):
    space = SearchSpace(small_teacher.spec)
    with pytest.raises(DassEdgeError, match="unknown remap mode"):
        remap(small_teacher, space.smallest_arch(), "middle")
    with pytest.raises(DassEdgeError, match="outside 1..2"):
        remap(small_teacher, Arch((3, 1, 1, 1), ((16,) * 3, (32,), (64,), (128,))))

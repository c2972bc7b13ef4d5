import random

import pytest
import torch

from dass_edge.errors import DassEdgeError
from dass_edge.models import build_model, model_spec
from dass_edge.space import Arch, SearchSpace, spec_flops, spec_params


@pytest.fixture(params=["resnet_edge_s", "resnet_edge_m", "resnet18"])
def space(request):
    return SearchSpace(model_spec(request.param, num_classes=10, resolution=32))


def _hook_macs(model: torch.nn.Module, resolution: int) -> int:
    total = 0

    def conv_hook(m, inp, out):
        nonlocal total
        k = m.kernel_size[0] * m.kernel_size[1]
        total += out.shape[1] * out.shape[2] * out.shape[3] * (m.in_channels // m.groups) * k

    def lin_hook(m, inp, out):
        nonlocal total
        total += m.in_features * m.out_features

    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.register_forward_hook(conv_hook)
        elif isinstance(m, torch.nn.Linear):
            m.register_forward_hook(lin_hook)
    model.eval()(torch.zeros(1, 3, resolution, resolution))
    return total


def test_params_and_flops_match_built_model(space):
    for arch in space.sample_many(8, seed=1) + [space.teacher_arch(), space.smallest_arch()]:
        spec = space.to_spec(arch)
        model = build_model(spec)
        assert spec_params(spec) == sum(p.numel() for p in model.parameters())
        assert spec_flops(spec) == _hook_macs(model, spec.resolution)


def test_imagenet_stem_flops_at_224():
    spec = model_spec("resnet18")
    # torchvision ResNet-18: 1.814 GMACs at 224x224 (conv + fc), 11.69M params.
    assert spec_params(spec) == 11_689_512
    assert abs(spec_flops(spec) - 1.8142e9) / 1.8142e9 < 1e-3


def test_encode_decode_roundtrip_and_fixed_length(space):
    rng = random.Random(0)
    lengths = set()
    for _ in range(50):
        a = space.sample(rng)
        vec = space.encode(a)
        lengths.add(len(vec))
        assert set(vec) <= {0.0, 1.0}
        assert space.decode(vec) == a
    assert lengths == {space.encoding_length}


def test_encoding_is_deterministic_and_distinct(space):
    a, b = space.sample_many(2, seed=3)
    assert space.encode(a) == space.encode(Arch.from_dict(a.to_dict()))
    assert space.encode(a) != space.encode(b)


def test_sampling_is_seeded_and_in_space(space):
    assert space.sample_many(20, seed=7) == space.sample_many(20, seed=7)
    assert space.sample_many(20, seed=7) != space.sample_many(20, seed=8)
    for a in space.sample_many(100, seed=2):
        assert space.contains(a)


def test_mutation_and_crossover_stay_in_space(space):
    rng = random.Random(0)
    parents = space.sample_many(10, seed=4)
    changed = 0
    for a in parents:
        m = space.mutate(a, rng, prob=0.5)
        assert space.contains(m)
        changed += m != a
        c = space.crossover(a, parents[0], rng)
        assert space.contains(c)
        for s in range(4):
            options = {(a.depths[s], a.widths[s]), (parents[0].depths[s], parents[0].widths[s])}
            assert (c.depths[s], c.widths[s]) in options
    assert changed >= 5


def test_space_size_counts_students():
    spec = model_spec("resnet_edge_s", num_classes=10)
    space = SearchSpace(spec)
    # 3 free stages: 9 + 81 configurations each; last stage fixed width: 2 depths.
    assert space.size() == 90**3 * 2
    assert SearchSpace(spec, fixed_last_stage=False).size() == 90**4


def test_last_stage_fixed_by_default():
    space = SearchSpace(model_spec("resnet_edge_s", num_classes=10))
    assert space.width_options[3] == (128,)
    assert space.width_options[0] == (8, 9, 10, 11, 12, 13, 14, 15, 16)


@pytest.mark.parametrize(
    "arch, message",
    [
        (Arch((3, 1, 1, 1), ((16,) * 3, (32,), (64,), (128,))), "depth 3 is outside 1..2"),
        (Arch((1, 1, 1, 1), ((7,), (32,), (64,), (128,))), "width 7 is not one of"),
        (Arch((1, 1, 1), ((16,), (32,), (64,))), "3 stages"),
        (Arch((1, 1, 1, 1), ((16,), (32,), (64,), (64,))), "stage 4 block 1 width 64"),
    ],
)
def test_invalid_arch_gives_clear_error(arch, message):
    space = SearchSpace(model_spec("resnet_edge_s", num_classes=10))
    with pytest.raises(DassEdgeError, match=message):
        space.validate(arch)


def test_arch_depth_width_mismatch_rejected():
    with pytest.raises(DassEdgeError, match="depth 2 but 1 block widths"):
        Arch((2, 1, 1, 1), ((16,), (32,), (64,), (128,)))


def test_decode_rejects_wrong_length():
    space = SearchSpace(model_spec("resnet_edge_s", num_classes=10))
    with pytest.raises(DassEdgeError, match="length 3"):
        space.decode([0.0, 1.0, 0.0])

"""StudentEmbedder: the same embeddings as remap + embed, for every teacher shape, mode and space."""

from __future__ import annotations

import pytest
import torch
from conftest import perturbed_teacher

from dass_edge.errors import DassEdgeError
from dass_edge.models import create_model, remap
from dass_edge.predictor.embeddings import EMBED_CHANNELS, EMBED_GRID, embed
from dass_edge.predictor.fast_embed import StudentEmbedder
from dass_edge.space import Arch, SearchSpace

MODES = ("first", "last", "uniform")

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def teachers() -> dict:
    from dass_edge.training.teacher import load_teacher

    return {"demo": load_teacher(None)[0], "resnet_edge_s": perturbed_teacher(),
            "resnet_edge_m": perturbed_teacher(model_name="resnet_edge_m", seed=1)}


def _probe(teacher, n: int = 4) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    s = teacher.spec
    return torch.randn(n, s.in_chans, s.resolution, s.resolution, generator=g)


def _archs(space: SearchSpace, n: int = 18, seed: int = 0) -> list[Arch]:
    return space.sample_many(n, seed=seed) + [space.smallest_arch(), space.teacher_arch()]


def _reference(teacher, archs: list[Arch], probe: torch.Tensor, mode: str) -> torch.Tensor:
    return torch.stack([embed(remap(teacher, a, mode), probe) for a in archs])


@pytest.mark.parametrize("fixed_last_stage", [True, False])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", ["demo", "resnet_edge_s", "resnet_edge_m"])
def test_matches_remap_then_embed(teachers, name, mode, fixed_last_stage):
    teacher = teachers[name]
    archs = _archs(SearchSpace(teacher.spec, fixed_last_stage=fixed_last_stage), seed=len(name))
    probe = _probe(teacher)
    got = StudentEmbedder(teacher, probe, mode).embed(archs)
    assert got.shape == (len(archs), probe.shape[0], EMBED_CHANNELS, EMBED_GRID, EMBED_GRID)
    torch.testing.assert_close(got, _reference(teacher, archs, probe, mode), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("mode", ["first", "last"])
def test_students_of_different_widths_share_convs(teachers, mode, monkeypatch):
    """The zero-padded, masked batches (nested slices) are exercised, and exact."""
    teacher = teachers["resnet_edge_s"]
    archs = _archs(SearchSpace(teacher.spec, fixed_last_stage=False), n=30, seed=11)
    probe = _probe(teacher, 2)
    fe = StudentEmbedder(teacher, probe, mode)
    mixed = []
    run = fe._run

    def spy(pos, nodes, xs):
        mixed.append(len({(n.w_in, n.w_out) for n in nodes}) > 1)
        return run(pos, nodes, xs)

    monkeypatch.setattr(fe, "_run", spy)
    got = fe.embed(archs)
    assert any(mixed)
    torch.testing.assert_close(got, _reference(teacher, archs, probe, mode), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("kwargs", [{"stem": "imagenet", "resolution": 64}, {"resolution": 16}])
def test_other_stems_and_resolutions(kwargs):
    torch.manual_seed(2)
    teacher = create_model("resnet_edge_s", **kwargs).eval()
    probe = _probe(teacher, 2)
    archs = _archs(SearchSpace(teacher.spec, fixed_last_stage=False), n=6)
    for mode in MODES:
        got = StudentEmbedder(teacher, probe, mode).embed(archs)
        torch.testing.assert_close(got, _reference(teacher, archs, probe, mode), atol=1e-4, rtol=1e-4)


def test_plain_ops_give_the_same_embeddings(teachers, monkeypatch):
    """Where oneDNN's fused conv ops are missing, conv2d + add + relu run instead."""
    import dass_edge.predictor.fast_embed as fast_embed

    teacher = teachers["demo"]
    archs = _archs(SearchSpace(teacher.spec), n=6)
    probe = _probe(teacher, 2)
    monkeypatch.setattr(fast_embed, "_fused_ops_work", lambda: False)
    fe = StudentEmbedder(teacher, probe, "uniform")
    assert fe._conv_relu is fast_embed._conv_relu_plain
    torch.testing.assert_close(fe.embed(archs), _reference(teacher, archs, probe, "uniform"), atol=1e-4, rtol=1e-4)


def test_cold_and_warm_cache_agree(teachers):
    teacher = teachers["resnet_edge_s"]
    space = SearchSpace(teacher.spec, fixed_last_stage=False)
    archs = _archs(space, n=30, seed=3)
    probe = _probe(teacher)
    fe = StudentEmbedder(teacher, probe, "first")
    cold = fe.embed(archs)
    assert fe.cache_info().misses > 0
    hits = fe.cache_info().hits
    warm = fe.embed(archs[::-1])  # every embedding cached
    assert fe.cache_info().hits > hits
    torch.testing.assert_close(warm, cold.flip(0), atol=0, rtol=0)
    # students one at a time, each from a partly warm cache (shared prefixes, evicted embeddings)
    fe2 = StudentEmbedder(teacher, probe, "first")
    fe2.embed(archs[:10])
    one_by_one = torch.cat([fe2.embed([a]) for a in archs])
    torch.testing.assert_close(one_by_one, cold, atol=1e-5, rtol=1e-5)  # other batches: rounding only
    uncached = StudentEmbedder(teacher, probe, "first", cache_mb=0)
    torch.testing.assert_close(uncached.embed(archs), cold, atol=1e-5, rtol=1e-5)
    assert uncached.cache_info().bytes == 0


def test_duplicates_and_empty(teachers):
    teacher = teachers["demo"]
    space = SearchSpace(teacher.spec)
    a, b = space.sample_many(2, seed=5)
    fe = StudentEmbedder(teacher, _probe(teacher, 2))
    out = fe.embed([a, b, a])
    assert torch.equal(out[0], out[2])
    assert not torch.is_inference(out)  # usable as a predictor input under autograd
    assert fe.embed([]).shape == (0, 2, EMBED_CHANNELS, EMBED_GRID, EMBED_GRID)


@pytest.mark.parametrize("mode", ["first", "uniform"])
def test_cache_stays_within_its_bound(teachers, mode):
    teacher = teachers["demo"]
    probe = _probe(teacher, 8)
    space = SearchSpace(teacher.spec, fixed_last_stage=False)
    archs = space.sample_many(40, seed=7)
    fe = StudentEmbedder(teacher, probe, mode, cache_mb=2)
    for i in range(0, len(archs), 8):
        out = fe.embed(archs[i : i + 8])
        info = fe.cache_info()
        assert 0 < info.bytes <= info.max_bytes == 2 << 20
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t, _ in fe._cache._d.values()}
    assert sum(storages.values()) == info.bytes  # views of one batch's output share (and count) one storage
    torch.testing.assert_close(out, _reference(teacher, archs[-8:], probe, mode), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("shape", [(4, 1, 32, 32), (4, 3, 16, 16), (3, 32, 32), (0, 3, 32, 32)])
def test_mismatched_probe_is_a_clear_error(teachers, shape):
    with pytest.raises(DassEdgeError) as exc:
        StudentEmbedder(teachers["demo"], torch.zeros(shape))
    msg = str(exc.value)
    assert "probe" in msg and "\n" not in msg


def test_bad_mode_and_arch_are_clear_errors(teachers):
    teacher = teachers["demo"]
    with pytest.raises(DassEdgeError, match="remap mode"):
        StudentEmbedder(teacher, _probe(teacher), "middle")
    fe = StudentEmbedder(teacher, _probe(teacher))
    with pytest.raises(DassEdgeError, match="depth"):
        fe.embed([Arch((3, 1, 1, 1), ((16, 16, 16), (32,), (64,), (128,)))])

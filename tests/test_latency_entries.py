"""LUT entries: the space's entries are exactly what its students are made of."""

from __future__ import annotations

import itertools

import pytest

from dass_edge.latency.entries import Entry, entry_lookup_key, entry_params, space_entries, spec_entries, spec_keys
from dass_edge.models import model_spec
from dass_edge.space import Arch, SearchSpace, spec_params
from dass_edge.spec import ModelSpec


def _all_archs(space: SearchSpace):
    per_stage = []
    for d_max, opts in zip(space.max_depths, space.width_options):
        per_stage.append([ws for d in range(1, d_max + 1) for ws in itertools.product(opts, repeat=d)])
    for combo in itertools.product(*per_stage):
        yield Arch(tuple(len(ws) for ws in combo), combo)


@pytest.mark.parametrize("fixed_last_stage", [True, False])
def test_space_entries_are_exactly_the_union_over_every_student(fixed_last_stage):
    teacher = ModelSpec.uniform((4, 4, 4, 4), (2, 1, 1, 1), num_classes=3, resolution=16)
    space = SearchSpace(teacher, fixed_last_stage=fixed_last_stage)
    used = {e for arch in _all_archs(space) for e in spec_entries(space.to_spec(arch))}
    assert set(space_entries(space)) == used


@pytest.mark.parametrize("name", ["resnet_edge_s", "resnet_edge_m", "resnet18"])
def test_sampled_students_only_use_space_entries(name):
    space = SearchSpace(model_spec(name, num_classes=26))
    keys = {entry_lookup_key(e) for e in space_entries(space)}
    for arch in space.sample_many(300, seed=1):
        assert set(spec_keys(space.to_spec(arch))) <= keys


def test_default_space_size_and_order():
    space = SearchSpace(model_spec("resnet_edge_s", num_classes=26))
    entries = space_entries(space)
    # 9 stems, 9 + 81 - 9 (dedup) stage-1 blocks, 2 x 81 per middle stage, 9 + 1 last-stage blocks, 1 head.
    assert len(entries) == 9 + 81 + 81 * 4 + 9 + 1 + 1 == 425
    assert len(set(e.key for e in entries)) == len(entries)
    assert entries[0].kind == "stem" and entries[-1].kind == "head"


def test_spec_keys_match_spec_entries_and_params_add_up():
    space = SearchSpace(model_spec("resnet18", num_classes=10, resolution=64))
    for arch in space.sample_many(20, seed=2):
        spec = space.to_spec(arch)
        entries = spec_entries(spec)
        assert [entry_lookup_key(e) for e in entries] == spec_keys(spec)
        assert sum(entry_params(e) for e in entries) == spec_params(spec)


def test_entry_key_roundtrip_and_validation():
    e = Entry("block", 16, 24, 2, 32)
    assert e.key == "block/16x24/s2/r32/b1"
    assert e.has_projection and not Entry("block", 8, 8, 1, 8).has_projection
    assert Entry.from_dict(e.to_dict()) == e
    from dass_edge.errors import DassEdgeError

    with pytest.raises(DassEdgeError):
        Entry.from_dict({**e.to_dict(), "kind": "conv"})
    with pytest.raises(DassEdgeError):
        Entry.from_dict({"kind": "block"})

"""The profiling-time estimate: calibrated on a measured table, it scales with the space and resolution."""

from __future__ import annotations

import glob
import os

import pytest

from dass_edge.latency.entries import Entry, spec_entries
from dass_edge.latency.estimate import entry_macs, profiling_estimate_s
from dass_edge.latency.table import LatencyTable
from dass_edge.models.resnet import model_spec
from dass_edge.space import SearchSpace, spec_flops

SHIPPED = glob.glob(os.path.join(os.path.dirname(__file__), "..", "latency_tables", "*.json"))


@pytest.fixture(scope="module")
def reference() -> LatencyTable:
    return LatencyTable.load(SHIPPED[0])


def test_entry_macs_add_up_to_the_model_flops():
    for name, kw in [("resnet_edge_s", {"num_classes": 10, "resolution": 32}), ("resnet18", {"resolution": 224})]:
        spec = model_spec(name, **kw)
        assert sum(entry_macs(e) for e in spec_entries(spec)) == spec_flops(spec)


def test_estimate_reproduces_the_reference_and_grows_with_resolution(reference):
    own = profiling_estimate_s(SearchSpace(reference.teacher), reference)
    assert own == pytest.approx(reference.data["provenance"]["elapsed_s"], rel=0.01)
    r18 = [profiling_estimate_s(SearchSpace(model_spec("resnet18", num_classes=10, resolution=r)), reference)
           for r in (64, 128, 224)]
    assert r18[0] < r18[1] < r18[2]
    assert r18[2] > 4 * own  # 224 px ResNet-18 is minutes, not "about a minute"


def test_entry_macs_of_a_projection_block():
    e = Entry("block", 16, 32, 2, 32)
    assert entry_macs(e) == (9 * 16 * 32 + 9 * 32 * 32 + 16 * 32) * 16 * 16

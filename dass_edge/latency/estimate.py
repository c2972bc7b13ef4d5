"""How long profiling a search space will take, before starting it.

A profile costs a fixed setup per table entry (build and load one block model) plus the timed runs
(sessions x iterations x the entry's latency), plus the whole-model fidelity check. Latency grows with an
entry's multiply-accumulates, so a reference table measured earlier (its entries' medians and its wall
time) calibrates both terms: a linear fit of median latency on MACs, and the setup left over when the
timed runs are subtracted from its wall time. The estimate scales with the space (entry count) and the
resolution (MACs): 81 s for the demo teacher at 32 px, many minutes for ResNet-18 at 224 px.
"""

from __future__ import annotations

import numpy as np

from dass_edge.latency.entries import Entry, space_entries
from dass_edge.latency.table import LatencyTable
from dass_edge.space import block_macs
from dass_edge.spec import conv_out

__all__ = ["entry_macs", "profiling_estimate_s"]


def entry_macs(e: Entry) -> int:
    """Multiply-accumulates of one entry (as :func:`dass_edge.space.spec_flops` counts them)."""
    if e.kind == "stem":
        if e.stem == "small":
            return e.in_ch * e.out_ch * 9 * e.resolution ** 2
        return e.in_ch * e.out_ch * 49 * conv_out(e.resolution, 2) ** 2
    if e.kind == "head":
        return e.in_ch * e.out_ch
    return block_macs(e.in_ch, e.out_ch, e.stride, e.resolution, e.has_projection)


def _fit(reference: LatencyTable) -> dict:
    """Calibration from a measured table: median ms = icpt + slope * MACs, timed runs per entry, the
    fidelity plan (students x sessions x iterations) and the setup seconds per entry left over."""
    entries = [(Entry.from_dict(d), d) for d in reference.data["entries"].values()]
    macs = np.array([entry_macs(e) for e, _ in entries], dtype=float)
    p50 = np.array([d["p50_ms"] for _, d in entries], dtype=float)
    slope, icpt = np.polyfit(macs, p50, 1)
    slope, icpt = max(float(slope), 1e-12), max(float(icpt), 0.0)
    runs = int(np.median([d.get("count", 1) for _, d in entries]))
    prov = reference.data.get("provenance", {})
    prof = prov.get("profile", {})
    fid_runs = int(prof.get("fidelity_students", 30)) * int(prof.get("fidelity_sessions", 15)) * \
        int(prof.get("iterations", 30))
    cal = {"icpt": icpt, "slope": slope, "runs": runs, "fid_runs": fid_runs}
    ref_space_ms = _student_ms(reference.teacher, cal)
    used = float(p50.sum()) * runs / 1000 + fid_runs * ref_space_ms / 1000
    cal["setup"] = max(float(prov.get("elapsed_s") or 0.0) - used, 0.0) / max(len(entries), 1)
    return cal


def _student_ms(teacher, cal: dict) -> float:
    """Predicted latency of a middle-sized student: the mean of the smallest student and the teacher."""
    from dass_edge.latency.entries import spec_entries
    from dass_edge.space import SearchSpace

    space = SearchSpace(teacher)
    ends = [space.to_spec(space.smallest_arch()), teacher]
    return float(np.mean([sum(cal["icpt"] + cal["slope"] * entry_macs(e) for e in spec_entries(s)) for s in ends]))


def profiling_estimate_s(space, reference: LatencyTable) -> float:
    """Seconds to profile ``space`` (a :class:`~dass_edge.space.SearchSpace`) on a machine like the one
    that measured ``reference``: setup per entry, the timed runs of every entry, and the fidelity check on
    whole students, each predicted from the entries' MACs with the reference's calibration. An estimate:
    setup and warm-up also grow with model size, which one reference table cannot separate."""
    cal = _fit(reference)
    entries = space_entries(space)
    timed = sum(cal["icpt"] + cal["slope"] * entry_macs(e) for e in entries) * cal["runs"] / 1000
    fidelity = cal["fid_runs"] * _student_ms(space.teacher, cal) / 1000
    return len(entries) * cal["setup"] + timed + fidelity

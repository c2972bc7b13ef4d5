"""The shipped CPU table that the search and transfer tests were calibrated on.

Several machines' tables ship (``latency_tables/``: one per CPU that measured one), and ``load_table(...,
this_machine=False)`` takes the newest. Tests whose budgets or expected figures come from one table's latencies
(e.g. a 0.35 ms budget between its fastest student and the teacher) name that table instead of taking whichever
is newest, so shipping another machine's table does not move them.
"""

from __future__ import annotations

from dass_edge.latency import LatencyTable
from dass_edge.resources import tables_dir

REFERENCE = ("cpu_intel-r-xeon-r-processor-family-6-model-207-2-cores-vm_onnxruntime-1.32.0_fp32_t1_b1_"
             "w16-32-64-128_d2-2-2-2_c26_r32.json")


def reference_table() -> LatencyTable:
    """The Intel Xeon VM's table (measured 2026-11-28), whatever other tables ship beside it."""
    return LatencyTable.load(tables_dir() / REFERENCE)

"""Latency lookup tables: device profiles, measurement backends, profiling (local or over SSH), fidelity.

Public API::

    load_table(device, resolution, teacher_spec=None) -> LatencyTable   # user store, then shipped tables
    LatencyTable.predict(spec) -> {"p50_ms", "p90_ms", "lut_ms"}          # corrected median and p90
    measure_onnx(path, profile, ...) -> {"p50_ms", "p90_ms", ...}         # end-to-end, profile's settings
    profile_device(device, teacher, resolution, target=..., ...) -> ProfileResult
    list_profiles() / load_profile(name)
"""

from __future__ import annotations

from dass_edge.latency.entries import Entry, space_entries, spec_entries
from dass_edge.latency.measure import measure_onnx
from dass_edge.latency.profiler import ProfileResult, profile_device
from dass_edge.latency.profiles import DeviceProfile, list_profiles, load_profile, resolve_device
from dass_edge.latency.remote import SshTarget, parse_host
from dass_edge.latency.store import device_summaries, find_tables, load_table, user_tables_dir
from dass_edge.latency.table import LatencyTable, validate_table
from dass_edge.latency.teachers import default_teacher_spec, teacher_spec

__all__ = [
    "DeviceProfile", "Entry", "LatencyTable", "ProfileResult", "SshTarget", "default_teacher_spec", "device_summaries",
    "find_tables",
    "list_profiles", "load_profile", "load_table", "measure_onnx", "parse_host", "profile_device", "resolve_device",
    "space_entries", "spec_entries", "teacher_spec", "user_tables_dir", "validate_table",
]

"""The device's latency table a search runs against: given, found, or (this machine's CPU only) measured
now; what ``search.json`` records about it, and the notes a weak table deserves."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path

from dass_edge.errors import DassEdgeError
from dass_edge.io import file_sha256
from dass_edge.latency.table import LatencyTable
from dass_edge.space import SearchSpace
from dass_edge.spec import ModelSpec

__all__ = ["DEFAULT_DEVICE", "Progress", "resolve_table", "table_info", "table_notes", "profile_command"]

#: The device searched for when none is named: the CPU this runs on.
DEFAULT_DEVICE = "cpu"

#: ``progress(phase, done, total)``: how profiling and the search report progress (``total`` None: unknown).
Progress = Callable[[str, int, "int | None"], None]


def resolve_table(device: str | None, spec: ModelSpec, fixed_last_stage: bool, table: LatencyTable | str | Path | None,
                  this_machine: bool, on_note: Callable[[str], None], profile_progress: Progress | None,
                  teacher_path: str | None = None) -> tuple[str, LatencyTable, str]:
    """The device's measured table: given, found, or (default device only) measured here now."""
    from dass_edge.latency import find_tables, load_table, profile_device, resolve_device

    space = SearchSpace(spec, fixed_last_stage=fixed_last_stage)
    if table is not None:
        t = table if isinstance(table, LatencyTable) else LatencyTable.load(table)
        if device is not None and resolve_device(device).name != t.device:
            raise DassEdgeError(f"the latency table {t.path or ''} was measured for device {t.device!r}, "
                                f"not {device!r}")
        if t.resolution != spec.resolution:
            raise DassEdgeError(f"the latency table is for {t.resolution} px but the teacher works at "
                                f"{spec.resolution} px")
        missing = t.missing(space)
        if missing:
            raise DassEdgeError(f"the latency table {t.path or ''} lacks {len(missing)} entries of this teacher's "
                                f"search space (first: {missing[0]}); measure one with dass-edge profile "
                                f"--device {t.device} --teacher <teacher>")
        return t.device, t, "given"
    profile = resolve_device(device or DEFAULT_DEVICE)  # an unknown device fails here
    if device is not None:  # a named device without a table: the error names the profile command
        try:
            return profile.name, load_table(profile, spec.resolution, spec, fixed_last_stage, this_machine), ""
        except DassEdgeError as e:
            head, sep, _ = str(e).partition("; build one with: ")
            if not sep:
                raise
            command = profile_command(profile.name, teacher_path, fixed_last_stage, remote=profile.detect is not None)
            raise DassEdgeError(f"{head}; build one with: {command}") from None
    find_tables(profile.name)  # a malformed table file is an error, not a reason to re-measure
    try:
        return profile.name, load_table(profile, spec.resolution, spec, fixed_last_stage, this_machine), ""
    except DassEdgeError:
        pass
    on_note(f"no latency table for this machine's CPU covering this teacher at {spec.resolution} px; "
            f"profiling it first ({_profiling_eta(space)}; later searches reuse it)")
    result = profile_device(profile, spec, spec.resolution, fixed_last_stage=fixed_last_stage,
                            progress=profile_progress)
    return profile.name, result.table, "profiled here"


def _profiling_eta(space: SearchSpace) -> str:
    """``about N minutes`` for profiling ``space``, estimated from the shipped table's own timings."""
    from dass_edge.latency import find_tables
    from dass_edge.latency.estimate import profiling_estimate_s

    shipped = [t for t, source in find_tables("cpu") if source == "shipped"]
    if not shipped:
        return "a few minutes"
    seconds = profiling_estimate_s(space, shipped[0])
    if seconds < 90:
        return "about a minute"
    return f"about {round(seconds / 60)} minutes, estimated from the shipped table's timings"


def table_info(table: LatencyTable, source: str) -> dict:
    from dass_edge.resources import tables_dir

    path = table.path
    if source != "profiled here" and path is not None:
        try:
            source = "shipped" if Path(path).resolve().is_relative_to(tables_dir().resolve()) else "user"
        except OSError:
            pass
    prov, fid = table.provenance, table.fidelity
    return {
        "path": str(path) if path else None,
        "sha256": file_sha256(path) if path and Path(path).is_file() else None,
        "source": source,
        "device": table.device, "backend": table.backend, "backend_version": prov.get("backend_version"),
        "precision": table.precision, "threads": prov.get("threads"), "batch": table.batch,
        "resolution": table.resolution, "measured_on": prov.get("measured_on"), "date": prov.get("date"),
        "entries": len(table.entries), "correction": table.correction,
        "fidelity": {k: fid.get(k) for k in ("students", "within_10pct", "rmspe", "spearman", "method", "fidelity_ok")},
        "transferred": {k: table.data["transferred"][k] for k in ("from", "samples")}
        if table.data.get("transferred") else None,
    }


#: A table whose profiling sessions of the same student differ by more than this (median ratio) was
#: measured while other jobs ran (``profile`` prints the same warning).
DISTURBED_SPREAD = 1.15


#: Below this share of fidelity students within ±10%, the table's latencies are flagged as unreliable.
WEAK_FIDELITY = 0.8


def table_notes(table: LatencyTable, device: str, command: str) -> list[str]:
    """A warning when the table's own fidelity check was weak (and why, when its sessions were disturbed).

    A shared machine disturbs every table a little; only a table whose whole-student check failed to
    withstand it is worth a word (the shipped one was measured under load and passed it)."""
    fid = table.fidelity or {}
    within, students = fid.get("within_10pct"), fid.get("students")
    if within is None or not students or within >= WEAK_FIDELITY:
        return []
    spread = fid.get("session_spread")
    why = ""
    if spread and spread > DISTURBED_SPREAD:
        why = (f"; it was measured while other jobs ran (sessions of the same student differed by "
               f"{100 * (spread - 1):.0f}%)")
    return [f"the {device} latency table is unreliable: only {100 * within:.0f}% of the {students} whole students "
            f"checked when profiling were within 10% of its predictions{why}. Latencies near the budget may be "
            f"off; re-measure it on a quiet machine: {command}"]


def profile_command(device: str, teacher_path: str | None, fixed_last_stage: bool = True,
                    remote: bool = False) -> str:
    """The ``dass-edge profile`` command that measures ``device``'s table for this teacher, runnable as is
    (no placeholder: the demo teacher needs no ``--teacher``, and the resolution is the teacher's)."""
    cmd = f"dass-edge profile --device {shlex.quote(device)}"
    if teacher_path is not None:
        cmd += f" --teacher {shlex.quote(teacher_path)}"
    if not fixed_last_stage:
        cmd += " --free-last-stage"
    if remote:
        cmd += " (on the device, or from this machine with --host user@device)"
    return cmd

"""Where tables live and how one is found for a device: the user's store first, then shipped tables.

The user store is ``$DASS_EDGE_TABLES`` or the platform data dir (``~/.local/share/dass-edge/latency_tables``).
Shipped tables live in ``latency_tables/`` (installed as ``dass_edge.latency_tables``). Only measured
tables exist anywhere; a device without one gets an error naming the command that builds it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from dass_edge.errors import DassEdgeError
from dass_edge.latency.profiles import DeviceProfile, resolve_device
from dass_edge.latency.provenance import this_machine_label
from dass_edge.latency.table import LatencyTable
from dass_edge.resources import tables_dir
from dass_edge.spec import ModelSpec

__all__ = ["device_summaries", "find_tables", "load_table", "table_filename", "user_tables_dir"]

_CACHE: dict[tuple[str, float, int], LatencyTable] = {}


def user_tables_dir() -> Path:
    """``$DASS_EDGE_TABLES``, else the platform's user data dir."""
    env = os.environ.get("DASS_EDGE_TABLES")
    if env:
        return Path(env)
    import platformdirs

    return platformdirs.user_data_path("dass-edge") / "latency_tables"


def _read(path: Path) -> LatencyTable:
    st = path.stat()
    key = (str(path), st.st_mtime, st.st_size)
    if key not in _CACHE:
        _CACHE[key] = LatencyTable.load(path)
    return _CACHE[key]


def find_tables(device: str | None = None) -> list[tuple[LatencyTable, str]]:
    """Every table (``(table, "user" | "shipped")``), user store first, newest first within each.

    Raises:
        DassEdgeError: a table file is malformed (named in the message).
    """
    out: list[tuple[LatencyTable, str]] = []
    for folder, source in ((user_tables_dir(), "user"), (tables_dir(), "shipped")):
        if not folder.is_dir():
            continue
        found = [_read(p) for p in sorted(folder.glob("*.json"))]
        found = [t for t in found if device is None or t.device == device]
        found.sort(key=lambda t: t.provenance["date"], reverse=True)
        out += [(t, source) for t in found]
    return out


def load_table(device: str | DeviceProfile, resolution: int, teacher_spec: ModelSpec | None = None,
               fixed_last_stage: bool = True, this_machine: bool = True) -> LatencyTable:
    """The measured table for ``device`` at ``resolution`` (covering ``teacher_spec``'s space when given).

    Args:
        device: a profile name (``cpu``, ``jetson-orin-nano``, ...; ``jetson`` detects this Jetson), file or object.
        resolution: input side in pixels.
        teacher_spec: the teacher whose search space must be covered; ``None`` takes any table.
        fixed_last_stage: the space keeps the last stage at the teacher's width (as the search does by default).
        this_machine: for profiles that mean "the CPU/GPU this runs on" (``cpu``, ``gpu``; not the named
            Jetson profiles), only accept a table measured on this machine, so another machine's numbers
            are never presented as this one's. ``False`` accepts any table of the profile.

    Raises:
        DassEdgeError: unknown device, malformed table, or no table: the message names the
            ``dass-edge profile`` command that builds one.
    """
    from dass_edge.space import SearchSpace

    profile = resolve_device(device)  # "jetson" means the Jetson this runs on
    space = None
    if teacher_spec is not None:
        space = SearchSpace(teacher_spec.replace(resolution=resolution), fixed_last_stage=fixed_last_stage)
    here = this_machine_label(profile) if (this_machine and not profile.detect) else None
    elsewhere: set[str] = set()
    for table, _source in find_tables(profile.name):
        if table.resolution != resolution or table.batch != profile.batch:
            continue
        if here is not None and table.provenance["measured_on"] != here:
            elsewhere.add(table.provenance["measured_on"])
            continue
        if space is None or not table.missing(space):
            return table
    what = "" if space is None else " covering this teacher's search space"
    if elsewhere:
        what += f" measured on this machine ({here}; tables here were measured on: {'; '.join(sorted(elsewhere))})"
    teacher_flag = "" if space is None else " --teacher <teacher checkpoint>"
    last = "" if fixed_last_stage else " --free-last-stage"
    raise DassEdgeError(
        f"no latency table for device {profile.name!r} at {resolution}x{resolution}{what}; build one with: "
        f"dass-edge profile --device {profile.name} --resolution {resolution}{teacher_flag}{last}"
    )


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-")


def table_filename(device: str, measured_on: str, backend: str, backend_version: str, precision: str,
                   threads: int, batch: int, teacher: ModelSpec, resolution: int) -> str:
    """A name that says what the table is, e.g.
    ``cpu_intel-xeon-2c_onnxruntime-1.32.0_fp32_t1_b1_w16-32-64-128_d2-2-2-2_c26_r32.json``."""
    ws = "-".join(str(w) for w in teacher.widths)
    ds = "-".join(str(d) for d in teacher.depths)
    stem = "" if teacher.stem == "small" else "_imagenet-stem"
    where = _slug(measured_on)[:64].strip("-")
    return (f"{_slug(device)}_{where}_{backend}-{_slug(backend_version)}_{precision}_t{threads}_b{batch}"
            f"_w{ws}_d{ds}_c{teacher.num_classes}{stem}_r{resolution}.json")


def device_summaries() -> list[dict]:
    """Every profile with its best table (user store first, newest first) or ``None``: what ``devices`` shows."""
    from dass_edge.latency.profiles import list_profiles

    rows = []
    for p in list_profiles():
        tables = find_tables(p.name)
        best = None
        if tables:
            table, source = tables[0]
            tr = table.data.get("transferred")
            best = {**table.summary(), "source": source,
                    "transferred": {"from": tr["from"], "samples": tr["samples"]} if tr else None}
        rows.append({"name": p.name, "backend": p.backend, "precision": p.precision, "description": p.description,
                     "tables": len(tables), "table": best})
    return rows

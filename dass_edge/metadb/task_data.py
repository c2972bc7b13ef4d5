"""Which pixels a database's rows were built on, checked before anything is scored.

Rows built from frozen task data (v2) record ``task_file`` and ``task_sha256``; every such row must name
its task's frozen file (``<task>-r16.npz``) with the sha256 listed in ``SHA256SUMS``, and the file's bytes
must match it, or the evaluation stops with a one-line error: labels from one set of pixels scored on
another would be a silently different experiment.

Rows without them (the shipped v1 rows, built before freezing existed) are resolved by task name and
resolution, the same rule :func:`dass_edge.data.builtin.load_builtin` applies: when the manifest lists
``<task>-r16.npz`` and the rows' resolution is a multiple of 16 px, the task is read from that file (x k
pixel repetition above 16 px) and checked against the manifest; otherwise it is rendered, which depends on
the machine's fonts and libraries, and the report says so (``source: rendered``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from dass_edge.data.frozen import STORED_RESOLUTION, check_frozen, frozen_file, read_frozen, verify_frozen
from dass_edge.errors import DassEdgeError

__all__ = ["resolve_task_data"]


def _one(values: set, what: str, task: str):
    if len(values) > 1:
        raise DassEdgeError(f"the rows of task {task} disagree on {what} ({', '.join(sorted(map(str, values)))}); "
                            "a task's rows must come from one dataset")
    return next(iter(values))


def resolve_task_data(rows: Sequence[dict]) -> dict[str, dict]:
    """Per task of ``rows``: ``{"source", "file", "sha256", "resolution"}``, after checking the data.

    ``source`` is ``frozen`` (rows record the file), ``frozen-by-name`` (v1 rows, resolved by task name
    and resolution) or ``rendered`` (no frozen copy: built-in rendering). A frozen file is read once
    here, so a corrupt ``.npz`` fails before any embedding starts.

    Raises:
        DassEdgeError: rows of a task disagree on resolution or frozen file, a recorded file or sha256 is
            not the manifest's, or the file is missing, corrupt or unreadable.
    """
    by_task: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_task[r["task"]].append(r)
    out = {}
    for task in sorted(by_task):
        mine = by_task[task]
        resolution = int(_one({int(r["resolution"]) for r in mine}, "resolution", task))
        recorded = {(r.get("task_file"), r.get("task_sha256")) for r in mine if r.get("task_sha256")}
        if recorded:
            if len(recorded) != 1 or any(not r.get("task_sha256") for r in mine):
                raise DassEdgeError(f"the rows of task {task} name {len(recorded)} frozen file(s) and "
                                    f"{sum(not r.get('task_sha256') for r in mine)} rows name none; a task's rows "
                                    "must come from one dataset")
            fname, sha = next(iter(recorded))
            if fname != frozen_file(task):
                raise DassEdgeError(f"rows of task {task} name the frozen file {fname!r}; its frozen file is "
                                    f"{frozen_file(task)!r}")
            check_frozen(task, sha)  # the manifest lists the rows' sha256
            source = "frozen"
        else:
            source = "frozen-by-name"
        found = verify_frozen(task)  # the bytes match the manifest
        if found is None or resolution % STORED_RESOLUTION:
            if source == "frozen":  # check_frozen passed, so the manifest lists it; the resolution is wrong
                raise DassEdgeError(f"rows of task {task} are at {resolution} px, not a multiple of the "
                                    f"{STORED_RESOLUTION} px its frozen file stores")
            out[task] = {"source": "rendered", "file": None, "sha256": None, "resolution": resolution}
            continue
        read_frozen(found[0])  # a readable .npz with every split (the sha256 proves the bytes, not the format)
        out[task] = {"source": source, "file": found[0].name, "sha256": found[1], "resolution": resolution}
    return out

"""The search run folder ``runs/<id>/``: where it goes, whether it can be written, and writing it whole.

Everything (``search.json``, ``report.md``, ``pareto.png``, ``candidates.csv``, ``rank<k>/config.json``) is
written into a staging folder by :class:`dass_edge.io.StagedOutput` and renamed into place at the end, so
a run folder is complete or absent. ``--replace`` sets the old run aside first and puts it back on failure.
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import os
import shlex
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from dass_edge.errors import DassEdgeError
from dass_edge.io import StagedOutput
from dass_edge.latency.runners import backend_names, get_backend

if TYPE_CHECKING:
    from dass_edge.search.plan import SearchPlan

__all__ = ["FORMAT", "VERSION", "default_run_id", "pick_run_dir", "is_search_run", "check_run_dir", "next_steps",
           "write_run"]

#: ``search.json``'s ``format`` and ``version``: what ``distill``, ``export`` and ``--replace`` recognize a run by.
FORMAT, VERSION = "dass-edge/search", 1


def default_run_id(now: _dt.datetime | None = None) -> str:
    """``search-YYYYmmdd-HHMMSS`` (local time)."""
    return f"search-{(now or _dt.datetime.now()).strftime('%Y%m%d-%H%M%S')}"


def pick_run_dir(out: str | Path | None, runs_dir: str | Path, run_id: str | None) -> tuple[Path, str, bool]:
    """``(folder, run id, id chosen here)``: ``out`` as given, else the first free ``runs_dir/<run_id>[-N]``."""
    if out is not None:
        path = Path(out)
        return path, path.name or str(path), False
    base = Path(runs_dir)
    rid = run_id or default_run_id()
    stem, n = rid, 2
    while (base / rid).exists():
        rid, n = f"{stem}-{n}", n + 1
    return base / rid, rid, run_id is None


def is_search_run(folder: Path) -> bool:
    """Whether ``folder`` holds a search run (the only kind of folder ``--replace`` replaces)."""
    try:
        return json.loads((folder / "search.json").read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def check_run_dir(out: Path, explicit: bool, replace: bool = False) -> None:
    """Fail now (creating nothing) if the run folder cannot be written at the end."""
    flag = "--out" if explicit else "the run folder"
    if out.exists():
        if not out.is_dir():
            raise DassEdgeError(f"{flag} {out} is a file; choose a folder that does not exist yet")
        if any(out.iterdir()):
            if not replace:
                raise DassEdgeError(f"{flag} {out} already exists and is not empty; choose another --out, or add "
                                    "--replace to replace that search run")
            if not is_search_run(out):
                raise DassEdgeError(f"--replace only replaces a search run folder, and {out} has no search.json "
                                    "of one; choose another --out")
    parent = next((p for p in out.absolute().parents if p.exists()), None)
    if parent is None or not parent.is_dir():
        raise DassEdgeError(f"cannot create {flag} {out}: {parent} is not a folder; choose another location")
    try:  # os.access says yes to root even where nothing can be created (/proc): try it for real
        os.rmdir(tempfile.mkdtemp(prefix=".dass-edge-check-", dir=parent))
    except OSError as e:
        raise DassEdgeError(f"cannot create {flag} {out}: {parent} is not writable ({e.strerror}); choose another "
                            "location") from None


def next_steps(run_dir: str | Path, device: str, backend: str | None = None, precision: str | None = None) -> dict:
    """The commands that continue from a run folder: distill the best pick, then export it."""
    run = shlex.quote(str(run_dir))
    spec = get_backend(backend) if backend in backend_names() else None
    if spec is not None and spec.builds_on_device:
        export = f"dass-edge export {run} --format {spec.export_format} --device {device} --host user@device"
    else:
        fmt = "onnx-fp16" if precision == "fp16" else "onnx-int8"
        export = f"dass-edge export {run} --format {fmt}" + ("" if device == "cpu" else f" --device {device}")
    return {"distill": f"dass-edge distill {run} --rank 1", "export": export}


_CSV_FIELDS = ("arch_key", "predicted_acc", "latency_ms", "latency_p90_ms", "params", "flops", "on_front")


def write_run(plan: SearchPlan, record: dict, rows: list[dict]) -> None:
    """Write everything into a staging folder next to the run folder, then rename it into place."""
    from dass_edge.search.report import write_report

    if plan.default_out and plan.out.exists():  # another search took this id meanwhile: take the next free one
        plan.out, plan.run_id, _ = pick_run_dir(None, plan.out.parent, plan.run_id)
        record.update(id=plan.run_id, run_dir=str(plan.out),
                      next_steps=next_steps(plan.out, plan.device, plan.table.backend, plan.table.precision))
    with StagedOutput(plan.out, whole=True, what="run folder") as staged:
        stage = staged.path("")
        files = ["search.json", "report.md", "pareto.png", "candidates.csv"]
        for pick in record["top"]:
            (stage / f"rank{pick['rank']}").mkdir()
            config = json.dumps(_config(plan, record, pick), indent=2, sort_keys=True) + "\n"
            (stage / pick["config"]).write_text(config)
            files.append(pick["config"])
        with open(stage / "candidates.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=_CSV_FIELDS)
            w.writeheader()
            w.writerows(rows)
        write_report(stage, record, rows)
        record["files"] = files
        (stage / "search.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        staged.commit_folder(replace=_only_a_search_run if plan.replace else None)


def _only_a_search_run(out: Path) -> None:
    """``--replace`` replaces a search run folder, nothing else (checked again as the new run moves in)."""
    if not is_search_run(out):
        raise DassEdgeError(f"--replace only replaces a search run folder, and {out} is not one (any more); "
                            "choose another --out")


def _config(plan: SearchPlan, record: dict, pick: dict) -> dict:
    """``rank<k>/config.json``: the student and what it is distilled from, enough to distill it by hand."""
    return {
        "format": "dass-edge/student-config", "version": 1, "rank": pick["rank"], "arch": pick["arch"],
        "arch_key": pick["arch_key"], "teacher": {"path": plan.teacher_path, "sha256": plan.teacher_sha256},
        "task": record["task"], "data_dir": record["data_dir"], "resolution": record["resolution"],
        "fixed_last_stage": plan.space.fixed_last_stage, "device": plan.device, "budget_ms": plan.budget_ms,
        "predicted_acc": pick["predicted_acc"], "latency_ms": pick["latency_ms"],
        "latency_p90_ms": pick["latency_p90_ms"], "params": pick["params"], "flops": pick["flops"],
        "distill_command": f"dass-edge distill {shlex.quote(str(plan.out))} --rank {pick['rank']}",
    }

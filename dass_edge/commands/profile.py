"""``dass-edge profile``: measure a device's latency lookup table (here or over SSH)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from dass_edge.commands._common import console, err_console, print_json, progress_bar
from dass_edge.errors import DassEdgeError

if TYPE_CHECKING:
    from dass_edge.latency.fewshot import FewShotResult

__all__ = ["profile_command"]

_PHASES = {"export": "write models", "measure": "measure"}


def profile_command(
    device: str = typer.Option(..., "--device", help="Device profile (see 'dass-edge devices'), 'jetson' to detect "
                               "the Jetson, or a profile .yaml file."),
    host: str = typer.Option(None, "--host", help="Measure on user@host[:port] over SSH instead of here."),
    resolution: int = typer.Option(None, "--resolution", help="Input resolution (default: the teacher's)."),
    teacher: str = typer.Option(None, "--teacher", help="Teacher checkpoint or registered model name whose search "
                                "space to cover (default: the demo teacher)."),
    out: Path = typer.Option(None, "--out", help="Table file (default: your table store, named for what it is)."),
    students: int = typer.Option(None, "--students", help="Random students measured end to end for the fidelity "
                                 "check (default: the profile's, 30)."),
    free_last_stage: bool = typer.Option(False, "--free-last-stage", help="Also cover students that slim the last "
                                         "stage (search with a free last stage)."),
    ssh_key: Path = typer.Option(None, "--ssh-key", help="Private key for --host."),
    known_hosts: Path = typer.Option(None, "--known-hosts", help="known_hosts file that must hold the host's key "
                                     "(default: yours)."),
    ssh_config: str = typer.Option(None, "--ssh-config", help="ssh config file for --host ('none' ignores yours)."),
    remote_python: str = typer.Option(None, "--remote-python", help="Python on the device (default: the profile's)."),
    connect_timeout: int = typer.Option(10, "--connect-timeout", min=1, help="Seconds to wait for --host."),
    few_shot: int = typer.Option(None, "--few-shot", help="Measure only N whole students here and transfer a table "
                                 "measured elsewhere (--from); --students then counts the held-out check students "
                                 "(default 10)."),
    from_table: Path = typer.Option(None, "--from", help="With --few-shot: the measured table to transfer (default: "
                                    "the cpu table covering this teacher)."),
    keep_records: Path = typer.Option(None, "--keep-records", help="Also keep the raw measurements (one JSON line "
                                      "per model and session: per-call microseconds, when it ended) in this file."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Measure every block configuration of the teacher's search space (plus stem and head) and write a table.

    A killed run resumes: rerunning the same command measures only what is missing.
    """
    if few_shot is None and from_table is not None:
        raise DassEdgeError("--from only applies with --few-shot N")
    if few_shot is not None and keep_records is not None:
        raise DassEdgeError("--keep-records applies to full profiles, not with --few-shot")
    from dass_edge.latency import SshTarget, profile_device, teacher_spec
    from dass_edge.latency.fewshot import profile_fewshot
    from dass_edge.latency.gate import fidelity_warning

    target = None
    if host is not None:
        target = SshTarget.parse(host, identity_file=str(ssh_key) if ssh_key else None,
                                 known_hosts=str(known_hosts) if known_hosts else None, config_file=ssh_config,
                                 connect_timeout=connect_timeout)
        if remote_python:
            target.python = remote_python
    spec = teacher_spec(teacher)
    with contextlib.ExitStack() as stack:
        tasks: dict[str, int] = {}
        bars: list = []  # the bar starts with the first progress report, so early errors stay one clean line

        def progress(phase: str, done: int, total: int) -> None:
            if not bars:
                # transient: a failure (e.g. no CUDA provider) ends as one error line, not a stale bar above it
                bars.append(stack.enter_context(progress_bar(transient=True)))
            if phase not in tasks:
                tasks[phase] = bars[0].add_task(_PHASES.get(phase, phase), total=total, status="")
            bars[0].update(tasks[phase], completed=done, total=total)

        if few_shot is not None:
            result = profile_fewshot(device, spec, few_shot, resolution, source=from_table, target=target, out=out,
                                     heldout=10 if students is None else students,
                                     fixed_last_stage=not free_last_stage, progress=progress)
        else:
            result = profile_device(device, spec, resolution, target=target, out=out,
                                    fixed_last_stage=not free_last_stage, students=students, progress=progress,
                                    keep_records=keep_records)
    table = result.table
    if few_shot is not None:
        _print_fewshot(result, json_out)
        return
    fid = table.fidelity
    summary = {"path": str(result.path), "device": table.device, "measured_on": table.provenance["measured_on"],
               "entries": len(table.entries), "resolution": table.resolution, "elapsed_s": round(result.elapsed_s, 1),
               "measured": result.measured, "resumed": result.reused,
               "fidelity": {k: fid.get(k) for k in ("students", "within_10pct", "rmspe", "spearman", "method",
                                                    "fidelity_ok", "gate")}}
    below = fidelity_warning(fid, table.device)
    if below:  # one clear line, on stderr so --json output stays parseable
        err_console.print(f"warning: {below}", markup=False)
    if json_out:
        print_json(summary)
        return
    if result.reused:
        err_console.print(f"resumed: {result.reused} measurements came from the interrupted run")
    console.print(f"wrote {result.path}")
    line = f"{len(table.entries)} entries on {summary['measured_on']} in {result.elapsed_s:.0f} s"
    if fid["students"]:
        line += (f"; {fid['students']} students: {100 * fid['within_10pct']:.0f}% within ±10%, "
                 f"RMSPE {100 * fid['rmspe']:.1f}%, Spearman {fid['spearman']:.3f} ({fid['method']})")
    console.print(line)
    spread = fid.get("session_spread")
    if spread and spread > 1.15:
        err_console.print(f"note: sessions of the same student differed by {100 * (spread - 1):.0f}% (median); "
                          "other jobs were probably running. The table uses undisturbed sessions, but a quieter "
                          "machine gives a more reliable one.")


def _print_fewshot(result: FewShotResult, json_out: bool) -> None:
    from dass_edge.latency.fewshot import describe_transfer, fewshot_warning

    table = result.table
    fid, tr = table.fidelity, table.data["transferred"]
    summary = {"path": str(result.path), "device": table.device, "measured_on": table.provenance["measured_on"],
               "transferred": {"from": tr["from"], "samples": tr["samples"]}, "heldout": result.heldout,
               "elapsed_s": round(result.elapsed_s, 1), "measure_s": round(result.measure_s, 1),
               "fit_leave_one_out": tr["fit"]["leave_one_out"],
               "fidelity": {k: fid.get(k) for k in ("students", "within_10pct", "rmspe", "spearman", "method")}}
    below = fewshot_warning(table.data)
    if below:  # on stderr, so --json output stays parseable
        err_console.print(f"warning: {below}", markup=False)
    if json_out:
        print_json(summary)
        return
    console.print(f"wrote {result.path}")
    console.print(f"{describe_transfer(table.data)} ({result.elapsed_s:.0f} s on {summary['measured_on']})")

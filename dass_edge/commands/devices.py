"""``dass-edge devices``: every device profile and whether a measured latency table exists for it."""

from __future__ import annotations

import typer
from rich.table import Table

from dass_edge.commands._common import console, print_json
from dass_edge.latency import device_summaries

__all__ = ["devices_command"]


def devices_command(
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List device profiles, their tables (measured or transferred, provenance, fidelity) and how to make a missing one.

    The ±10% and Spearman columns of a transferred table are its held-out check on the target.
    """
    rows = device_summaries()
    if json_out:
        print_json(rows)
        return
    table = Table(title="Devices")
    for col in ("device", "backend", "precision", "measured on", "table", "date", "px", "entries", "±10%", "Spearman"):
        table.add_column(col, justify="right" if col in ("px", "entries", "±10%", "Spearman") else "left")
    missing = []
    for r in rows:
        t = r["table"]
        if t is None:
            missing.append(r["name"])
            table.add_row(r["name"], r["backend"], r["precision"], "no table", "", "", "", "", "", "")
            continue
        spearman = "" if t["spearman"] is None else f"{t['spearman']:.3f}"
        within = "" if t["within_10pct"] is None else f"{100 * t['within_10pct']:.0f}%"
        tr = t.get("transferred")
        how = f"transferred ({tr['samples']} students)" if tr else "measured"
        table.add_row(r["name"], r["backend"], r["precision"], f"{t['measured_on']} ({t['source']})", how,
                      t["date"][:10], str(t["resolution"]), str(t["entries"]), within, spearman)
    console.print(table)
    if missing:
        console.print(f"No table for {', '.join(missing)}: measure one with "
                      "dass-edge profile --device NAME [--host user@device], or transfer one from a few whole "
                      "students: add --few-shot 20")

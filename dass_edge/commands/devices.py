"""``dass-edge devices``: every device profile and whether a measured latency table exists for it."""

from __future__ import annotations

import typer
from rich import box
from rich.table import Table

from dass_edge.commands._common import console, print_json

__all__ = ["devices_command"]


def devices_command(
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List device profiles, their tables (measured or transferred, provenance, fidelity) and how to make a
    missing one. The ±10% and Spearman columns of a transferred table are its held-out check on the target."""
    from dass_edge.latency import device_summaries

    rows = device_summaries()
    if json_out:
        print_json(rows)
        return
    # Names and numbers never wrap or get cut (they are what users type and compare); where each table
    # was measured is long, so it goes on its own line below the table, which then fits 80 columns.
    table = Table(title="Devices", box=box.SIMPLE_HEAD)
    for col in ("device", "backend", "precision", "px", "entries", "±10%", "Spearman"):
        table.add_column(col, justify="left" if col in ("device", "backend", "precision") else "right", no_wrap=True)
    missing, where = [], []
    for r in rows:
        t = r["table"]
        if t is None:
            missing.append(r["name"])
            table.add_row(r["name"], r["backend"], r["precision"], "-", "no table", "", "")
            continue
        spearman = "" if t["spearman"] is None else f"{t['spearman']:.3f}"
        within = "" if t["within_10pct"] is None else f"{100 * t['within_10pct']:.0f}%"
        tr = t.get("transferred")
        table.add_row(r["name"], r["backend"], r["precision"], str(t["resolution"]), str(t["entries"]), within,
                      spearman)
        verb = f"transferred ({tr['samples']} whole students measured)" if tr else "measured"
        where.append(f"{r['name']}: {verb} on {t['measured_on']}, {t['date'][:10]} ({t['source']})")
    console.print(table)
    plain = {"soft_wrap": False, "markup": False, "highlight": False}
    for line in where:
        console.print(line, **plain)
    if missing:
        console.print(f"No table for {', '.join(missing)}: measure one with "
                      "dass-edge profile --device NAME [--host user@device], or transfer one from a few whole "
                      "students: add --few-shot 20", **plain)

"""``dass-edge data``: list the built-in tasks and look at their samples."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from dass_edge.commands._common import console, print_json

app = typer.Typer(help="Built-in tasks and image folders.", no_args_is_help=True)


@app.command("list")
def list_tasks(
    resolution: int = typer.Option(32, help="Resolution the tasks are generated at."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List the built-in offline tasks."""
    from dass_edge.data import task_summaries

    rows = task_summaries(resolution)
    if json_out:
        print_json(rows)
        return
    table = Table(title="Built-in tasks")
    for col in ("name", "classes", "train", "val", "test", "description"):
        table.add_column(col, justify="right" if col in ("classes", "train", "val", "test") else "left")
    for r in rows:
        table.add_row(r["name"], str(r["num_classes"]), str(r["train"]), str(r["val"]), str(r["test"]),
                      r["description"])
    console.print(table)


@app.command("show")
def show(
    task: str = typer.Argument(None, help="Built-in task name (default: the demo task)."),
    data: Path = typer.Option(None, "--data", help="An image folder instead of a built-in task."),
    out: Path = typer.Option(Path("grid.png"), "--out", help="PNG to write."),
    per_class: int = typer.Option(8, help="Samples per class."),
    split: str = typer.Option("train", help="train, val or test."),
    resolution: int = typer.Option(32, help="Resolution."),
) -> None:
    """Save a grid of samples per class as a PNG."""
    from dass_edge.data import load_task
    from dass_edge.data.preview import save_sample_grid

    task_data = load_task(task, data, resolution)
    path = save_sample_grid(task_data, out, per_class=per_class, split=split)
    console.print(f"wrote {path} ({task_data.num_classes} classes x {per_class} samples of {task_data.name})")

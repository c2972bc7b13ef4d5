"""Printing helpers shared by the commands: one console, JSON output, rich progress."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

__all__ = ["console", "err_console", "print_json", "finite_option", "progress_bar", "set_threads", "threads_option",
           "DEFAULT_THREADS"]

#: torch intra-op threads for training, scoring and verification. One: the students are tiny, and on a
#: shared machine a second OpenMP thread spin-waits for a busy core; measured 1 vs 2 threads under load in
#: BENCHMARKS.md ("threads").
DEFAULT_THREADS = 1

console = Console()
err_console = Console(stderr=True)


def threads_option():
    """``--threads N``: the same option on every command that runs torch."""
    return typer.Option(DEFAULT_THREADS, "--threads", min=1, help="torch CPU threads (1 measured fastest on a "
                        "busy machine; see BENCHMARKS.md).")


def set_threads(n: int) -> None:
    """Pin torch's intra-op threads (imports torch: call once the arguments are checked)."""
    import torch

    torch.set_num_threads(int(n))


def print_json(data: object) -> None:
    """Machine-readable output on stdout (nothing else is printed there with ``--json``)."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()


@contextmanager
def progress_bar(transient: bool = False) -> Iterator[Progress]:
    """A rich progress bar on stderr, so ``--json`` stdout stays clean.

    If the block raises, the bar is dropped instead of printed, so an error still ends in its one line.
    """
    quiet = err_console.quiet
    try:
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err_console,
            transient=transient,
        ) as progress:
            try:
                yield progress
            except BaseException:
                progress.live.transient = True  # a terminal erases the bar
                err_console.quiet = quiet or not err_console.is_terminal  # elsewhere it is never printed
                raise
    finally:
        err_console.quiet = quiet


def finite_option(value: float | None) -> float | None:
    """Callback of every float option: NaN and infinity are refused where they are parsed."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a finite number")
    return value

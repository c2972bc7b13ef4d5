"""Printing helpers shared by the commands: one console, JSON output, rich progress."""

from __future__ import annotations

import json
import math
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from dass_edge.errors import DassEdgeError

__all__ = ["console", "err_console", "print_json", "finite_option", "progress_bar", "set_threads", "threads_option",
           "DEFAULT_THREADS", "train_device_option", "old_device_option", "pick_train_device"]

#: torch intra-op threads for training, scoring and verification. One: the students are tiny, and on a
#: shared machine a second OpenMP thread spin-waits for a busy core; measured 1 vs 2 threads under load in
#: BENCHMARKS.md ("threads").
DEFAULT_THREADS = 1

#: Piped or logged output is not cut to rich's 80-column default: result tables carry architecture keys users
#: copy from logs (a terminal, or ``COLUMNS``, still sets the width).
LOG_WIDTH = 200

console = Console(width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else LOG_WIDTH)
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


_TORCH_DEVICE = re.compile(r"(cpu|cuda(:\d+)?)\Z")


def train_device_option():
    """``--train-device``: the torch accelerator a training command runs on (``--device`` names a deployment
    target, as in ``profile``, ``search`` and ``export``)."""
    return typer.Option(None, "--train-device", help="Train on cpu or cuda[:N] (default: cpu).")


def old_device_option():
    """``--device cpu|cuda[:N]`` on a training command: the spelling before ``--train-device``, kept one release."""
    return typer.Option(None, "--device", hidden=True, help="Deprecated: use --train-device.")


def pick_train_device(train_device: str | None, old_device: str | None) -> str:
    """The training accelerator from ``--train-device`` or the deprecated ``--device`` (which warns once).

    Raises:
        DassEdgeError: both are given, or the value is not cpu, cuda or cuda:N (checked before any warning,
            so a bad value is one line).
    """
    if train_device is not None and old_device is not None:
        raise DassEdgeError("give the training accelerator once: --train-device (--device is its old spelling)")
    flag, value = ("--device", old_device) if old_device is not None else ("--train-device", train_device)
    name = (value or "cpu").strip().lower()
    if not _TORCH_DEVICE.match(name):
        raise DassEdgeError(f"{flag} {value!r}: training runs on cpu, cuda or cuda:N (the deployment target is "
                            "chosen later, by search and export)")
    if old_device is not None:
        sys.stderr.write("warning: --device for the training accelerator is deprecated; use --train-device\n")
    return name

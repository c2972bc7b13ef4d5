"""The measurement protocol, shared by local profiling and the remote agent.

Each model is measured in several *rounds*; a round opens a fresh session, warms it up for a fixed
time and times single calls. Rounds of all models are interleaved: the job runs in passes, every
model's rounds are spread evenly over the passes (a model with 15 rounds gets one per pass, one with
5 every third pass), and each pass runs in a shuffled order. A burst of background load then spoils
one round of many models instead of every round of one, which matters on shared machines; the
caller takes medians over rounds.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .factory import make_runner

__all__ = ["pinned_to_one_core", "quietest_core", "run_job", "scheduling_priority"]


@contextlib.contextmanager
def scheduling_priority(nice: int | None) -> Iterator[int | None]:
    """Run the block at nice value ``nice`` (e.g. -10) if allowed, then restore the old value.

    A higher priority keeps background jobs from preempting a ~0.1 ms call on a busy machine (measured
    here: median repeatability 0.7% instead of 13% with a teacher training on the same two cores).
    Raising priority needs root or CAP_SYS_NICE; without it the old value stays. Yields the nice value
    in effect (None where the platform has no nice values).
    """
    if not hasattr(os, "getpriority"):
        yield None
        return
    old = os.getpriority(os.PRIO_PROCESS, 0)
    now = old
    if nice is not None and nice != old:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, int(nice))
            now = int(nice)
        except OSError:
            now = old
    try:
        yield now
    finally:
        if now != old:
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, 0, old)


def _idle_ticks() -> dict[int, int]:
    """Per-core idle+iowait ticks from /proc/stat (empty where unreadable)."""
    out = {}
    try:
        with open("/proc/stat", encoding="ascii") as f:
            for line in f:
                name, *fields = line.split()
                if name.startswith("cpu") and name[3:].isdigit():
                    out[int(name[3:])] = int(fields[3]) + int(fields[4])
    except (OSError, ValueError, IndexError):
        return {}
    return out


def quietest_core(cores: set[int], sample_s: float = 0.1) -> int:
    """The core of ``cores`` that was idle longest over ``sample_s`` seconds (the lowest one on a tie)."""
    before = _idle_ticks()
    time.sleep(sample_s)
    after = _idle_ticks()
    return max(sorted(cores), key=lambda c: after.get(c, 0) - before.get(c, 0))


@contextlib.contextmanager
def pinned_to_one_core(pin: bool, core: int | None = None) -> Iterator[int | None]:
    """Pin this process to one of its allowed cores for the block (Linux), then restore its affinity.

    ``core`` None takes the last allowed core (on small VMs the first usually takes the device interrupts);
    ``benchmarks/bench_timing.py`` passes :func:`quietest_core`'s. Yields the core in effect, or None where not
    pinned (not asked, one core only, not permitted, or the platform has no affinity). Measured on this 2-core
    VM, pinning gave no gain, in block timings or in whole tables (``BENCHMARKS.md``), so profiles leave it off.
    """
    if not pin or not hasattr(os, "sched_setaffinity"):
        yield None
        return
    old = os.sched_getaffinity(0)
    if len(old) < 2:
        yield None
        return
    core = max(old) if core is None else core
    try:
        os.sched_setaffinity(0, {core})
    except OSError:
        yield None
        return
    try:
        yield core
    finally:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, old)


def run_job(
    items: Iterable[dict[str, Any]],
    settings: dict[str, Any],
    emit: Callable[[dict[str, Any]], None],
    seed: int = 0,
) -> int:
    """Measure every ``(item, round)`` pair and ``emit`` one record per pair, as soon as it is done.

    Args:
        items: dicts with ``id``, ``artifact`` (file path), ``rounds`` (round numbers still to measure),
            optionally ``sessions`` (planned rounds in all, default ``max(rounds) + 1``) and, for the torch
            backend, ``input_shape``.
        settings: backend settings plus ``warmup_s``, ``iterations`` and optionally ``nice`` and ``pin_core``.
        emit: receives ``{"id", "round", "us": [per-call microseconds], "nice", "core", "t"}`` (``core``: the core
            the job was pinned to, or None; ``t``: when the round ended, Unix time); it may raise to stop the job.
        seed: seeds the per-round shuffle.

    Returns:
        The number of records emitted.
    """
    items = list(items)
    warmup_s, iterations = float(settings["warmup_s"]), int(settings["iterations"])
    totals = [int(it.get("sessions") or max(it["rounds"], default=-1) + 1) for it in items]
    passes = max(totals, default=0)
    schedule: dict[int, list[tuple[dict[str, Any], int]]] = {}
    for it, total in zip(items, totals):
        for r in it["rounds"]:
            schedule.setdefault(r * passes // total, []).append((it, r))
    count = 0
    with scheduling_priority(settings.get("nice")) as nice, pinned_to_one_core(bool(settings.get("pin_core"))) as core:
        for p in sorted(schedule):
            todo = schedule[p]
            random.Random(seed * 1_000_003 + p).shuffle(todo)
            for it, r in todo:
                runner = make_runner(settings, it["artifact"], it.get("input_shape"))
                with runner:
                    secs = runner.measure(warmup_s, iterations)
                emit({"id": it["id"], "round": r, "us": [round(s * 1e6, 3) for s in secs], "nice": nice,
                      "core": core, "t": round(time.time(), 3)})
                count += 1
    return count

"""Shared by the benchmark scripts: machine description and result fragments.

Each ``bench_<name>.py`` writes ``benchmarks/results/<name>.md`` (title, command, machine, date,
figures); ``benchmarks/run.py`` assembles all fragments into ``BENCHMARKS.md``.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import shutil
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    import torch

    versions = [f"torch {torch.__version__}"]
    try:
        import onnxruntime

        versions.append(f"onnxruntime {onnxruntime.__version__}")
    except ImportError:  # pragma: no cover
        pass
    return (f"{cpu_model()}, {os.cpu_count()} logical cores, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, {', '.join(versions)}")


def write_fragment(name: str, title: str, command: str, body: str, copy_to: Path | None = None) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    text = (f"## {title}\n\n- Command: `{command}`\n- Machine: {machine()}\n"
            f"- Load average when written (1/5/15 min): {load} — above 2 means other jobs shared the 2 cores\n"
            f"- Date: {dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}\n\n{body.strip()}\n")
    path = RESULTS / f"{name}.md"
    path.write_text(text)
    if copy_to is not None and Path(copy_to) != path:  # a benchmark's --out elsewhere gets the same text
        Path(copy_to).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, copy_to)
    return path


def teacher_space_latency(teacher_path: str | Path):
    """A saved teacher, its search space, a student -> CPU latency (ms, this machine's table) function and
    the table: what the search benchmarks compare picks with."""
    from dass_edge.latency import load_table
    from dass_edge.models.checkpoint import load_checkpoint
    from dass_edge.space import SearchSpace

    teacher, _ = load_checkpoint(teacher_path)
    space = SearchSpace(teacher.spec)
    table = load_table("cpu", teacher.spec.resolution, teacher.spec)

    def latency(arch) -> float:
        return float(table.predict(space.to_spec(arch))["p50_ms"])

    return teacher, space, latency, table


def task_bootstrap(diffs, n: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% interval of the mean of per-task paired differences, tasks resampled with replacement."""
    import numpy as np

    diffs = np.asarray(diffs, dtype=float)
    rng = np.random.default_rng(seed)
    means = [diffs[rng.integers(0, len(diffs), len(diffs))].mean() for _ in range(n)]
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


#: How the session 10-11 task set was cut from the database (its first 892 rows less emoji-sports' first 6).
SET5 = ("Task set: `set5.jsonl` = `head -892 metadb/metadb_v2.jsonl | grep -v '\"task\":\"emoji-sports\"'` "
        "(886 rows, 16 meta-training tasks; read with `--db shipped`).\n\n")

#: Session 12's task set: set 5 plus emoji-sports (complete), without the unfinished emoji-symbols.
SET6 = ("Task set: `set6.jsonl` = `head -967 metadb/metadb_v2.jsonl | grep -v '\"task\":\"emoji-symbols\"'` "
        "(950 rows, 17 meta-training tasks; read with `--db shipped`).\n\n")


def task_set_text(command: str, default: str = SET5) -> str:
    """The task-set line of a fragment: how set 5 or 6 was cut when the command read that file, else the databases
    the command names (``default`` if it names none), so a rerun on another set is not labelled with an old one."""
    for name, text in (("set5.jsonl", SET5), ("set6.jsonl", SET6)):
        if name in command:
            return text
    dbs = [w for prev, w in zip(command.split(), command.split()[1:]) if prev == "--db"]
    return (f"Task set: the meta-training tasks of {' + '.join(f'`{d}`' for d in dbs)}.\n\n" if dbs
            else default)

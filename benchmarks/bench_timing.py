"""Benchmark: what makes CPU latency measurements drift on a shared machine, side by side in one run.

    python benchmarks/bench_timing.py [--reps 10] [--conditions default,pinned,warm50] [--out FILE]

A fixed set of models from the demo space at 32 px (the per-call overhead model, blocks, whole
students) is measured ``--reps`` times under each condition, the conditions interleaved rep by rep
in a rotating order, so every condition sees the same co-tenants. Each rep is the ``cpu`` profile's
protocol (fresh sessions, interleaved shuffled rounds, nice -10 where permitted). Per condition:

- **drift**: per model, the median of its session medians in the first half of the reps vs the
  second half; |ratio - 1|, median (and worst) over models. A table measured in 50 s is only as good
  as this level holds still.
- **rep-to-rep CV** of each model's undisturbed median (lower quartile of session medians, what tables
  store), median over models.
- **session spread**: max/min session median within one rep, median over models and reps.

Conditions: ``default`` (unpinned, 10 ms warm-up), ``pinned`` (``os.sched_setaffinity`` to the core that
was idle longest over 0.1 s, so the process keeps its caches instead of being migrated), ``warm50`` (50 ms
warm-up by time), ``pinned_warm50``.
ORT intra-op spinning is not a condition: at one intra-op thread onnxruntime starts no worker threads.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import RESULTS, write_fragment  # noqa: E402
from dass_edge.latency.runners.timing import pinned_to_one_core, quietest_core  # noqa: E402


@contextlib.contextmanager
def pinned(enabled: bool = True) -> Iterator[int | None]:
    """Run the block on the quietest allowed core (the library's pinning, with this bench's choice of core)."""
    cores = os.sched_getaffinity(0) if enabled and hasattr(os, "sched_getaffinity") else set()
    with pinned_to_one_core(enabled, quietest_core(cores) if len(cores) > 1 else None) as core:
        yield core


CONDITIONS = {"default": (False, None), "pinned": (True, None), "warm50": (False, 0.05),
              "pinned_warm50": (True, 0.05)}


def _models(work: Path, n_blocks: int, n_students: int) -> dict[str, Path]:
    from dass_edge.latency import default_teacher_spec, space_entries
    from dass_edge.latency.artifacts import EntryArtifact, OverheadArtifact, StudentArtifact
    from dass_edge.space import SearchSpace

    space = SearchSpace(default_teacher_spec().replace(resolution=32))
    entries = space_entries(space)
    files = {"overhead": OverheadArtifact("onnxruntime", "fp32")(work / "overhead.onnx")}
    for e in entries[:: max(len(entries) // n_blocks, 1)][:n_blocks]:
        files[e.key] = EntryArtifact(e, "onnxruntime", "fp32")(work / f"b{len(files)}.onnx")
    for i, arch in enumerate(space.sample_many(n_students, seed=11)):
        files[f"student/{i}"] = StudentArtifact(space.to_spec(arch), 1, "onnxruntime", "fp32")(work / f"s{i}.onnx")
    return files


def _one_rep(files: dict[str, Path], settings: dict, sessions: int, seed: int) -> dict[str, list[float]]:
    """Per model: its session medians (ms) from one interleaved job."""
    from dass_edge.latency.runners.timing import run_job

    got: dict[str, dict[int, float]] = {k: {} for k in files}
    items = [{"id": k, "artifact": str(p), "rounds": list(range(sessions)), "sessions": sessions}
             for k, p in files.items()]

    def emit(rec: dict) -> None:
        got[rec["id"]][rec["round"]] = float(np.median(rec["us"])) / 1e3

    run_job(items, settings, emit, seed=seed)
    return {k: [v[r] for r in sorted(v)] for k, v in got.items()}


def measure(files: dict[str, Path], conditions: list[str], reps: int, sessions: int) -> dict[str, dict]:
    """Run the conditions interleaved; returns per condition the figures and the per-rep medians."""
    from dass_edge.latency import load_profile

    base = load_profile("cpu").backend_settings()
    runs: dict[str, list[dict[str, list[float]]]] = {c: [] for c in conditions}
    wall = dict.fromkeys(conditions, 0.0)
    cores: dict[str, set] = {c: set() for c in conditions}
    for rep in range(reps):
        order = conditions[rep % len(conditions):] + conditions[: rep % len(conditions)]
        for cond in order:
            pin, warm = CONDITIONS[cond]
            settings = {**base, **({"warmup_s": warm} if warm is not None else {})}
            t0 = time.perf_counter()
            with pinned(pin) as core:
                runs[cond].append(_one_rep(files, settings, sessions, seed=rep))
            wall[cond] += time.perf_counter() - t0
            cores[cond].add(core)
        print(f"rep {rep + 1}/{reps} done, load {os.getloadavg()[0]:.1f}", file=sys.stderr)
    out = {}
    half = reps // 2
    for cond, reps_ in runs.items():
        drift, cv, spread = [], [], []
        for k in files:
            first = np.median([m for r in reps_[:half] for m in r[k]])
            second = np.median([m for r in reps_[half:] for m in r[k]])
            drift.append(abs(second / first - 1.0))
            p50s = [np.percentile(r[k], 25) for r in reps_]
            cv.append(float(np.std(p50s) / np.mean(p50s)))
            spread += [max(r[k]) / min(r[k]) for r in reps_]
        out[cond] = {"drift_median": float(np.median(drift)), "drift_max": float(np.max(drift)),
                     "cv_median": float(np.median(cv)), "spread_median": float(np.median(spread)),
                     "wall_s": wall[cond], "cores": sorted(str(c) for c in cores[cond])}
    return out


def main(argv: list[str] | None = None) -> int:
    argv = [] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--sessions", type=int, default=5, help="fresh sessions per model per rep")
    ap.add_argument("--blocks", type=int, default=10)
    ap.add_argument("--students", type=int, default=6)
    ap.add_argument("--conditions", default="default,pinned,warm50,pinned_warm50")
    ap.add_argument("--out", type=Path, default=RESULTS / "timing.md")
    args = ap.parse_args(argv)
    conditions = args.conditions.split(",")
    if unknown := [c for c in conditions if c not in CONDITIONS]:
        ap.error(f"unknown conditions {unknown}; choose among {sorted(CONDITIONS)}")
    command = " ".join(["python benchmarks/bench_timing.py", *argv])
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-timing-") as tmp:
        files = _models(Path(tmp), args.blocks, args.students)
        res = measure(files, conditions, args.reps, args.sessions)
    load_after = os.getloadavg()
    rows = ["| condition | drift between halves: median / worst model | rep-to-rep CV of the undisturbed median "
            "| session spread (max/min) | wall s | core(s) |", "| --- | ---: | ---: | ---: | ---: | --- |"]
    for cond, r in res.items():
        rows.append(f"| {cond} | {100 * r['drift_median']:.1f}% / {100 * r['drift_max']:.1f}% | "
                    f"{100 * r['cv_median']:.1f}% | {r['spread_median']:.3f} | {r['wall_s']:.0f} | "
                    f"{', '.join(r['cores'])} |")
    body = f"""
- Models: the per-call overhead model, {args.blocks} blocks and {args.students} students of the demo space at
  32 px; {args.sessions} fresh sessions each per rep, {args.reps} reps per condition, conditions interleaved rep by
  rep (rotating order), each rep with the `cpu` profile's protocol (onnxruntime, 1 thread, nice -10).
- Load average (1-min) {load_before[0]:.1f} before / {load_after[0]:.1f} after: other jobs shared the 2 cores.

{chr(10).join(rows)}

- Lower is better in the first three columns. "drift" compares the first and the second half of the reps, which
  is what spoils a table whose blocks and students are measured minutes apart.
"""
    path = write_fragment("timing", "Timing robustness on a shared CPU (pinning, warm-up)", command, body,
                          copy_to=args.out)
    print(path.read_text())
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main(sys.argv[1:]))

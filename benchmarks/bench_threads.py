"""torch threads for the commands that train or score (``--threads``) → benchmarks/results/threads.md.

KD throughput (training images per second) of the quick start's kind of student, distilled from the
demo teacher at 32 px, with 1 and 2 torch threads, runs interleaved (1 2 1 2 ...), in two conditions:
the machine as found, and with ``--load`` extra busy-looping processes (what a shared CI runner or a
laptop running other work looks like). The busy loops are started and stopped by this script.

    python benchmarks/bench_threads.py [--images 1024] [--repeats 2] [--load 2] [--threads 1,2]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import RESULTS, machine  # noqa: E402
from dass_edge.data import load_task  # noqa: E402
from dass_edge.data.task import Split  # noqa: E402
from dass_edge.space import SearchSpace, parse_arch  # noqa: E402
from dass_edge.training.distill import DB_RECIPE, KDConfig, distill  # noqa: E402
from dass_edge.training.teacher import load_teacher  # noqa: E402

STUDENT = "d1-2-2-1_w8-28.28-64.32-128"  # a pick of the quick start's search (50% of the teacher's latency)


def _subset(split: Split, n: int) -> Split:
    return Split(split.images[:n].clone(), split.labels[:n].clone())


def _busy(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait(timeout=30)


def measure(images: int, repeats: int, threads: list[int], load: int) -> list[dict]:
    teacher, meta = load_teacher(None)
    data = load_task(meta["task"], resolution=teacher.spec.resolution)
    data = dataclasses.replace(data, train=_subset(data.train, images), val=_subset(data.val, 256),
                               test=_subset(data.test, 256))
    arch = SearchSpace(teacher.spec).validate(parse_arch(STUDENT))
    recipe = dataclasses.replace(DB_RECIPE, epochs=1)
    cache = Path(tempfile.mkdtemp(prefix="bench-threads-"))
    sha = "bench-threads"
    distill(teacher, arch, data, KDConfig(recipe=recipe), teacher_sha256=sha, cache_dir=cache)  # warm: cache, code
    rows = []
    for condition, extra in (("as found", 0), (f"+{load} busy processes", load)):
        procs = _busy(extra)
        try:
            time.sleep(2 if extra else 0)
            load_before = os.getloadavg()[0]
            ips: dict[int, list[float]] = {t: [] for t in threads}
            for _ in range(repeats):
                for t in threads:
                    torch.set_num_threads(t)
                    r = distill(teacher, arch, data, KDConfig(recipe=recipe), teacher_sha256=sha, cache_dir=cache)
                    ips[t].append(r.images_per_second)
            load_after = os.getloadavg()[0]
        finally:
            _stop(procs)
        for t in threads:
            rows.append({"condition": condition, "threads": t, "img_s": statistics.median(ips[t]), "all": ips[t],
                         "load": (round(load_before, 1), round(load_after, 1))})
    return rows


def write(rows: list[dict], args: argparse.Namespace, seconds: float) -> Path:
    base = {r["condition"]: r["img_s"] for r in rows if r["threads"] == min(args.threads)}
    lines = [
        "# Torch threads (`--threads`, default 1)",
        "",
        f"- command: `python benchmarks/bench_threads.py --images {args.images} --repeats {args.repeats} "
        f"--load {args.load} --threads {','.join(map(str, args.threads))}`",
        f"- machine: {machine()}",
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {seconds:.0f} s",
        "",
        f"KD training throughput of `{STUDENT}` distilled from the demo teacher (32 px, first {args.images} "
        f"train images, 1 epoch per run, teacher outputs cached), median of {args.repeats} runs per setting, "
        "runs interleaved across thread counts. Load average is the 1-minute figure before and after each "
        "condition.",
        "",
        "| condition | threads | img/s (median) | runs | vs 1 thread | load avg |",
        "|---|---:|---:|---|---:|---|",
    ]
    for r in rows:
        runs = ", ".join(f"{v:.0f}" for v in r["all"])
        lines.append(f"| {r['condition']} | {r['threads']} | {r['img_s']:.0f} | {runs} | "
                     f"{r['img_s'] / base[r['condition']]:.2f}x | {r['load'][0]} → {r['load'][1]} |")
    lines += [
        "",
        "`distill`, `teacher train`, `search` (predictor scoring) and `export` (verification) default to "
        "`--threads 1`: the students are tiny, and when other work holds the cores a second OpenMP thread "
        "spin-waits for one (the table). Only a loaded machine was available here: on a quiet one, compare "
        "with `--threads 2` before changing the default.",
        "",
    ]
    out = RESULTS / "threads.md"
    out.write_text("\n".join(lines))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--load", type=int, default=2, help="busy-looping processes for the loaded condition")
    ap.add_argument("--threads", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2])
    args = ap.parse_args()
    t0 = time.perf_counter()
    rows = measure(args.images, args.repeats, args.threads, args.load)
    print(f"wrote {write(rows, args, time.perf_counter() - t0)}")


if __name__ == "__main__":
    main()

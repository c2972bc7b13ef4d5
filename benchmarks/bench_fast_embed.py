"""Student-embedding throughput: StudentEmbedder (folded BN, prefix cache) against remap + embed.

    python benchmarks/bench_fast_embed.py [--threads 2] [--repeats 3]

Demo teacher, probe of the glyph-latin-upper training split at 32 px. Streams:
(a) evolution-like: 100 random students, then 20 generations of 100 children (50 mutations, 50
crossovers of the top 25 by a stand-in score); like the search's SearchLog, only students not scored
before are embedded, and only the embed calls are timed; (b) 2000 uniform random students in calls of
256 (like random search); (c) the reference path on 50 students; (d) = (a) with an 8-image probe.
Prints a table; writes nothing.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dass_edge.data import load_task  # noqa: E402
from dass_edge.models.remap import remap  # noqa: E402
from dass_edge.predictor.embeddings import embed, probe_batch  # noqa: E402
from dass_edge.predictor.fast_embed import StudentEmbedder  # noqa: E402
from dass_edge.space import Arch, SearchSpace  # noqa: E402
from dass_edge.training.teacher import load_teacher  # noqa: E402

TASK = "glyph-latin-upper"


def evolution_stream(space: SearchSpace, fe: StudentEmbedder, generations: int = 20, population: int = 100,
                     n_parents: int = 25, seed: int = 0) -> tuple[int, int, float]:
    """(students in the stream, distinct ones embedded, seconds in embed) for an OFA-like evolution.

    Like the search's SearchLog, a student already scored is not embedded again; the fitness is a
    stand-in for the predictor (the embedding's norm), so parents depend on the embeddings.
    """
    rng = random.Random(seed)
    seen: dict[Arch, float] = {}
    seconds, total = 0.0, 0

    def score(archs: list[Arch]) -> None:
        nonlocal seconds, total
        total += len(archs)
        fresh = [a for a in dict.fromkeys(archs) if a not in seen]
        if not fresh:
            return
        t0 = time.perf_counter()
        emb = fe.embed(fresh)
        seconds += time.perf_counter() - t0
        for a, e in zip(fresh, emb.flatten(1).norm(dim=1).tolist()):
            seen[a] = e

    pop = space.sample_many(population, seed=seed)
    score(pop)
    for _ in range(generations):
        parents = sorted(dict.fromkeys(pop), key=lambda a: -seen[a])[:n_parents]
        children = [space.mutate(rng.choice(parents), rng) for _ in range(population // 2)]
        children += [space.crossover(rng.choice(parents), rng.choice(parents), rng)
                     for _ in range(population - population // 2)]
        score(children)
        pop = parents + children
    return total, len(seen), seconds


def random_stream(space: SearchSpace, fe: StudentEmbedder, n: int = 2000, call: int = 256) -> tuple[int, int, float]:
    archs = space.sample_many(n, seed=1)
    t0 = time.perf_counter()
    for i in range(0, n, call):
        fe.embed(archs[i : i + call])
    return n, n, time.perf_counter() - t0


def reference(space: SearchSpace, teacher, probe: torch.Tensor, n: int = 50) -> tuple[int, int, float]:
    archs = space.sample_many(n, seed=2)
    t0 = time.perf_counter()
    for a in archs:
        embed(remap(teacher, a, "first"), probe)
    return n, n, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3, help="fresh embedder (cold cache) per repeat; median shown")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    teacher, _ = load_teacher(None)
    spec = teacher.spec
    split = load_task(TASK, resolution=spec.resolution).train
    probes = {n: probe_batch(split, spec.mean, spec.std, size=n) for n in (16, 8)}
    space = SearchSpace(spec, fixed_last_stage=True)
    load0 = os.getloadavg()[0]
    rows = []

    def run(name: str, fn, probe_size: int, fast: bool = True) -> None:
        rates, distinct_rates, hit_rates = [], [], []
        for _ in range(args.repeats):
            fe = StudentEmbedder(teacher, probes[probe_size], "first") if fast else None
            total, distinct, sec = fn(fe)
            rates.append(total / sec)
            distinct_rates.append(distinct / sec)
            if fast:
                info = fe.cache_info()
                hit_rates.append(info.hits / max(1, info.hits + info.misses))
        hit = f"{100 * statistics.median(hit_rates):.1f}%" if fast else "-"
        rows.append((name, probe_size, total, distinct, statistics.median(rates), statistics.median(distinct_rates),
                     distinct_rates[0], max(distinct_rates), hit))

    run("(a) evolution stream", lambda fe: evolution_stream(space, fe), 16)
    run("(b) 2000 random", lambda fe: random_stream(space, fe), 16)
    run("(c) remap + embed", lambda fe: reference(space, teacher, probes[16]), 16, fast=False)
    run("(d) evolution stream", lambda fe: evolution_stream(space, fe), 8)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores, load average "
          f"{load0:.2f} -> {os.getloadavg()[0]:.2f}; {args.repeats} repeats, a fresh embedder (cold cache) each; "
          "only embed calls timed")
    print(f"{'stream':<22}{'probe':>6}{'students':>9}{'distinct':>9}{'students/s':>11}{'distinct/s':>11}"
          f"{'1st':>6}{'best':>6}{'block hits':>11}")
    for name, probe_size, total, distinct, rate, d_rate, d_first, d_best, hit in rows:
        print(f"{name:<22}{probe_size:>6}{total:>9}{distinct:>9}{rate:>11.0f}{d_rate:>11.0f}{d_first:>6.0f}"
              f"{d_best:>6.0f}{hit:>11}")
    print("students/s: every student of the stream over the embed time (a repeat costs the search nothing,\n"
          "SearchLog skips it); distinct/s: the students actually embedded, median of the repeats; 1st: the\n"
          "first repeat (cold process: oneDNN kernels JIT-compiled, memory first touched); best: the fastest.")


if __name__ == "__main__":
    main()

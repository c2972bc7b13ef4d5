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
from dass_edge.teacher import load_teacher  # noqa: E402

TASK = "glyph-latin-upper"


def evolution_stream(space: SearchSpace, fe: StudentEmbedder, generations: int = 20, population: int = 100,
                     n_parents: int = 25, seed: int = 0) -> tuple[int, float]:
    """(students embedded, seconds in embed) for an OFA-like evolution scored by a stand-in fitness."""
    rng = random.Random(seed)
    seen: dict[Arch, float] = {}
    seconds = 0.0

    def score(archs: list[Arch]) -> None:
        nonlocal seconds
        fresh = [a for a in dict.fromkeys(archs) if a not in seen]
        if not fresh:
            return
        t0 = time.perf_counter()
        emb = fe.embed(fresh)
        seconds += time.perf_counter() - t0
        for a, e in zip(fresh, emb.flatten(1).norm(dim=1).tolist()):  # stand-in for the predictor
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
    return len(seen), seconds


def random_stream(space: SearchSpace, fe: StudentEmbedder, n: int = 2000, call: int = 256) -> tuple[int, float]:
    archs = space.sample_many(n, seed=1)
    t0 = time.perf_counter()
    for i in range(0, n, call):
        fe.embed(archs[i : i + call])
    return n, time.perf_counter() - t0


def reference(space: SearchSpace, teacher, probe: torch.Tensor, n: int = 50) -> tuple[int, float]:
    archs = space.sample_many(n, seed=2)
    t0 = time.perf_counter()
    for a in archs:
        embed(remap(teacher, a, "first"), probe)
    return n, time.perf_counter() - t0


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

    def run(name: str, fn, probe_size: int, cache: bool = True) -> None:
        rates, hit_rates, n = [], [], 0
        for _ in range(args.repeats):
            fe = StudentEmbedder(teacher, probes[probe_size], "first")
            n, sec = fn(fe)
            rates.append(n / sec)
            info = fe.cache_info()
            hit_rates.append(info.hits / max(1, info.hits + info.misses))
        hit = f"{100 * statistics.median(hit_rates):.1f}%" if cache else "-"
        rows.append((name, probe_size, n, statistics.median(rates), max(rates), hit))

    run("(a) evolution stream", lambda fe: evolution_stream(space, fe), 16)
    run("(b) 2000 random", lambda fe: random_stream(space, fe), 16)
    ref = [reference(space, teacher, probes[16]) for _ in range(args.repeats)]
    rows.append(("(c) remap + embed", 16, ref[0][0], statistics.median(n / s for n, s in ref),
                 max(n / s for n, s in ref), "-"))
    run("(d) evolution stream", lambda fe: evolution_stream(space, fe), 8)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores, "
          f"load avg {load0:.2f} -> {os.getloadavg()[0]:.2f}, {args.repeats} repeats (cold cache each)")
    print(f"{'stream':<24}{'probe':>6}{'students':>10}{'median/s':>10}{'best/s':>10}{'block hits':>12}")
    for name, probe_size, n, med, best, hit in rows:
        print(f"{name:<24}{probe_size:>6}{n:>10}{med:>10.0f}{best:>10.0f}{hit:>12}")


if __name__ == "__main__":
    main()

"""What the search's short-KD refinement costs, with and without the shared teacher-output cache
→ results/refine_cost.md.

The refinement distills its finalists for the first E epochs of the recipe. Without a cache each finalist
runs the teacher on every batch, so the teacher's forward passes are paid once per finalist; with the
teacher-output cache (``distill``'s, built for those E epochs) they are paid once per search and shared.
Both ways train on the same stream and must give the same accuracies (checked here, not assumed).

On the README's default (the demo teacher and its task), 4 finalists of 4 depth patterns (the largest by
FLOPs of each of 4 random patterns), E = 3, one thread; each way run ``--repeats`` times, alternating, with
a fresh cache folder every time (a search's first refinement, not a rerun):

    python benchmarks/bench_refine_cost.py [--repeats 2]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import write_fragment  # noqa: E402


def finalists(space, n: int, seed: int = 0) -> list:
    """The largest-by-FLOPs student of each of ``n`` random depth patterns (what FLOPs' finalists look like)."""
    rng = random.Random(seed)
    by_pattern: dict = {}
    for arch in (space.sample(rng) for _ in range(4000)):
        if arch.depths not in by_pattern or space.flops(arch) > space.flops(by_pattern[arch.depths]):
            by_pattern[arch.depths] = arch
    patterns = sorted(by_pattern, key=str)
    return [by_pattern[p] for p in rng.sample(patterns, n)]


def main() -> None:
    from dass_edge.search.plan import prepare_search
    from dass_edge.search.refine import REFINE_EPOCHS, REFINE_FINALISTS, short_kd
    from dass_edge.training.distill import DB_RECIPE

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        plan = prepare_search("50%", out=Path(tmp) / "run", refine=0)
    archs = finalists(plan.space, REFINE_FINALISTS)
    seconds: dict[str, list[float]] = {"live teacher": [], "teacher-output cache": []}
    accs: dict[str, list[float]] = {}
    for r in range(args.repeats):
        for way in (list(seconds) if r % 2 == 0 else list(seconds)[::-1]):
            with tempfile.TemporaryDirectory() as cache:
                t0 = time.perf_counter()
                runs = short_kd(plan.teacher, plan.data, archs, REFINE_EPOCHS, teacher_sha256=plan.teacher_sha256,
                                cache_dir=cache if way == "teacher-output cache" else None)
                seconds[way].append(time.perf_counter() - t0)
            accs.setdefault(way, [x.val_acc for x in runs])
            print(f"{way}: {seconds[way][-1]:.1f} s", flush=True)
    same = accs["live teacher"] == accs["teacher-output cache"]
    live, cached = (statistics.median(seconds[w]) for w in seconds)
    rows = "\n".join(f"| {w} | {', '.join(f'{s:.1f}' for s in v)} | {statistics.median(v):.1f} |"
                     for w, v in seconds.items())
    teacher = Path(plan.teacher_path).name if plan.teacher_path else "the demo teacher"
    body = (f"Task `{plan.data.name}`, teacher `{teacher}` ({plan.teacher.spec.resolution} px, "
            f"{len(plan.data.train)} training images), {REFINE_FINALISTS} finalists x {REFINE_EPOCHS} of "
            f"{DB_RECIPE.epochs} epochs, one thread, {args.repeats} repeats per way (alternating order).\n\n"
            "| teacher's answers | seconds per refinement | median |\n|---|---|---:|\n" + rows + "\n\n"
            f"Cache / live: {cached / live:.2f} of the time. The finalists' accuracies after {REFINE_EPOCHS} epochs "
            f"are {'identical' if same else 'NOT identical'} both ways "
            f"({', '.join(f'{a:.2f}' for a in accs['live teacher'])}).\n")
    write_fragment("refine_cost", "What the search's refinement costs: live teacher vs shared teacher-output cache",
                   "python benchmarks/bench_refine_cost.py " + " ".join(sys.argv[1:]), body)
    print(body)
    if not same:
        raise SystemExit("the cache changed the finalists' accuracies")


if __name__ == "__main__":
    main()

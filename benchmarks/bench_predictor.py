"""DaSS predictor benchmarks → benchmarks/results/predictor.md.

1. Held-out evaluation of the shipped predictor (``dass-edge meta eval``): per held-out task and on
   average, DaSS next to params, FLOPs, four zero-cost proxies, an architecture-only predictor, a
   MetaD2A-style dataset-encoder predictor and the seed-to-seed ceiling.
2. Ablations, each an ensemble trained like the shipped one: without the student embedding (S), the
   teacher embedding (T) or the architecture encoding (A), and without teacher-guided adaptation.
3. Scoring throughput at 32x32 (demo teacher, 2 threads), embeddings included: an evolution-like
   stream of candidates and uniform random candidates, against the architecture-only path.

    python benchmarks/bench_predictor.py [--skip ablations] [--members 3] [--steps N]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import RESULTS, write_fragment  # noqa: E402
from dass_edge.predictor.evaluation import ensemble_predict, evaluate_heldout  # noqa: E402
from dass_edge.predictor.metrics import rank_metrics  # noqa: E402
from dass_edge.predictor.pipeline import default_db_path, load_db, resolve_teachers_dir, train_ensemble  # noqa: E402
from dass_edge.predictor.store import load_predictor  # noqa: E402
from dass_edge.predictor.training import TrainConfig  # noqa: E402

ABLATIONS = {"no S (student embedding)": {"use": ("arch", "teacher")},
             "no T (teacher embedding)": {"use": ("student", "arch")},
             "no A (architecture)": {"use": ("student", "teacher")},
             "no adaptation": {"adapt": False}}


def _table(report: dict) -> str:
    tasks = report["heldout_tasks"]
    head = "| method | " + " | ".join(tasks) + " | mean Spearman | mean Kendall | mean top-5 | mean regret (pts) |"
    lines = [head, "|" + "---|" * (len(tasks) + 5)]
    order = sorted(report["mean"], key=lambda m: (m != "dass", m == "ceiling", -report["mean"][m]["spearman"]))
    for m in order:
        mean = report["mean"][m]
        cells = " | ".join(f"{report['tasks'][t][m]['spearman']:.3f}" for t in tasks)
        lines.append(f"| {m} | {cells} | {mean['spearman']:.3f} | {mean['kendall']:.3f} | {mean['top5']:.2f} | "
                     f"{mean['regret']:.2f} |")
    return "\n".join(lines)


def _ablations(tasks: list, meta: dict, members: int, steps: int | None) -> str:
    held = [t for t in tasks if t.heldout]
    base = TrainConfig.from_dict(meta["train"])
    if steps:
        base = replace(base, steps=steps)
    lines = ["| variant | " + " | ".join(t.name for t in held) + " | mean Spearman | mean regret (pts) |",
             "|" + "---|" * (len(held) + 3)]
    for name, change in {"full (as shipped)": {}, **ABLATIONS}.items():
        cfg = replace(base, **change)
        t0 = time.perf_counter()
        models = train_ensemble(tasks, cfg, members)
        per = {}
        for t in held:
            steps_ = None if cfg.adapt else 0
            per[t.name] = rank_metrics(ensemble_predict(models, t, adapt_steps=steps_), t.labels.numpy() * 100)
        rho = sum(v["spearman"] for v in per.values()) / len(per)
        regret = sum(v["regret"] for v in per.values()) / len(per)
        lines.append(f"| {name} | " + " | ".join(f"{per[t.name]['spearman']:.3f}" for t in held)
                     + f" | {rho:.3f} | {regret:.2f} |")
        print(lines[-1], f"({time.perf_counter() - t0:.0f} s)", flush=True)
    return "\n".join(lines)


def _throughput() -> str:
    from dass_edge.data import load_task
    from dass_edge.predictor.encoding import student_features
    from dass_edge.predictor.scoring import load_scorer
    from dass_edge.space import SearchSpace
    from dass_edge.teacher import load_teacher

    torch.set_num_threads(2)
    teacher, tmeta = load_teacher(None)
    data = load_task(tmeta["task"], resolution=teacher.spec.resolution)
    space = SearchSpace(teacher.spec)
    rows = []
    # Evolution-like: a population, then generations of mutations and crossovers of the best quarter.
    import random

    rng = random.Random(0)
    scorer = load_scorer(teacher, data, teacher_meta=tmeta)
    pop = space.sample_many(100, seed=0)
    t0, n = time.perf_counter(), 0
    scores = list(scorer(pop))
    n += len(pop)
    for _ in range(20):
        best = [a for _, a in sorted(zip(scores, pop), key=lambda p: -p[0])[:25]]
        children = [space.mutate(rng.choice(best), rng, 0.3) for _ in range(50)]
        children += [space.crossover(rng.choice(best), rng.choice(best), rng) for _ in range(25)]
        s = list(scorer(children))
        n += len(children)
        pop, scores = best + children, [*sorted(scores, reverse=True)[:25], *s]
    evo = n / (time.perf_counter() - t0)
    rows.append(("evolution-like stream (100 + 20 x 75)", n, evo))
    fresh = load_scorer(teacher, data, teacher_meta=tmeta)
    archs = space.sample_many(2000, seed=3)
    t0 = time.perf_counter()
    for i in range(0, len(archs), 250):
        fresh(archs[i:i + 250])
    uni = len(archs) / (time.perf_counter() - t0)
    rows.append(("uniform random (cold cache)", len(archs), uni))
    # Architecture-only path: the same predictor forward with the embedding cost removed (features only).
    t0 = time.perf_counter()
    codes = torch.tensor([student_features(a, teacher.spec) for a in archs])
    with torch.no_grad():
        for m in fresh.models:
            m.arch_enc(codes)
    arch_rate = len(archs) / (time.perf_counter() - t0)
    rows.append(("architecture encoding only (no embeddings)", len(archs), arch_rate))
    lines = ["| stream | candidates | candidates/s | vs arch-only |", "|---|---|---|---|"]
    for name, count, rate in rows:
        lines.append(f"| {name} | {count} | {rate:,.0f} | {rate / arch_rate:.3f}x |")
    return "\n".join(lines) + ("\n\nTarget: >= 500 candidates/s including embeddings at 32x32 on 2 cores "
                               f"(evolution-like stream: {'met' if evo >= 500 else 'NOT met'}; uniform: "
                               f"{'met' if uni >= 500 else 'NOT met'}).")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip", default="", help="comma-separated: ablations, throughput")
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--steps", type=int, default=None)
    args = parser.parse_args()
    skip = set(args.skip.split(","))
    torch.set_num_threads(1)
    db = default_db_path()
    teachers = resolve_teachers_dir(db, None)
    rows, tasks = load_db(db, teachers)
    models, meta = load_predictor(None)
    report = evaluate_heldout(models, tasks, rows, teachers, plots_dir=RESULTS / "predictor_plots")
    (RESULTS / "predictor_eval.json").write_text(json.dumps(report, indent=1))
    mean = report["mean"]
    baselines = {m: v for m, v in mean.items() if m not in ("dass", "dass_no_adapt", "ceiling")}
    best = max(baselines, key=lambda m: baselines[m]["spearman"])
    best_regret = min(baselines, key=lambda m: baselines[m]["regret"])
    d, c = mean["dass"], mean["ceiling"]
    body = (f"Shipped predictor: {meta['members']} members, trained {meta.get('trained_at')} on "
            f"{meta['db']['rows']} rows of {len(meta['db']['train_tasks'])} meta-training tasks "
            f"({', '.join(meta['db']['train_tasks'])}); held out: {', '.join(report['heldout_tasks'])}.\n\n"
            "### Held-out Spearman per task, and means (regret: best true accuracy minus the pick's, points)\n\n"
            + _table(report) + "\n\n"
            f"- DaSS mean Spearman {d['spearman']:.3f} = {d['spearman'] / c['spearman']:.2f} x the seed ceiling "
            f"{c['spearman']:.3f} (target >= 0.90 x: {'met' if d['spearman'] >= 0.9 * c['spearman'] else 'NOT met'}).\n"
            f"- Best baseline: {best} {baselines[best]['spearman']:.3f}; DaSS - best = "
            f"{d['spearman'] - baselines[best]['spearman']:+.3f} (target >= +0.10: "
            f"{'met' if d['spearman'] >= baselines[best]['spearman'] + 0.10 else 'NOT met'}).\n"
            f"- Mean regret: DaSS {d['regret']:.2f} points; lowest baseline {best_regret} "
            f"{baselines[best_regret]['regret']:.2f} (target: beat every baseline: "
            f"{'met' if d['regret'] < baselines[best_regret]['regret'] else 'NOT met'}).\n"
            "- Plots (predicted vs true per held-out task): `benchmarks/results/predictor_plots/`.\n")
    if "ablations" not in skip:
        body += "\n### Ablations (ensembles trained and scored the same way)\n\n" + _ablations(
            tasks, meta, args.members, args.steps) + "\n"
    if "throughput" not in skip:
        body += "\n### Scoring throughput (demo teacher, 32x32, 2 threads, 16-image probe)\n\n" + _throughput() + "\n"
    write_fragment("predictor", "DaSS predictor (held-out tasks)", "python benchmarks/bench_predictor.py", body)
    print(body)


if __name__ == "__main__":
    main()

"""DaSS predictor benchmarks → benchmarks/results/predictor.md.

1. Held-out evaluation of the shipped predictor (``dass-edge meta eval``): per held-out task and on
   average, DaSS next to params, FLOPs, four zero-cost proxies, an architecture-only predictor, a
   MetaD2A-style dataset-encoder predictor and the seed-to-seed ceiling.
2. Ablations, each an ensemble trained like the shipped one, by input (S: student embedding, A:
   architecture encoding, T: teacher embedding) and with teacher-guided adaptation off.
3. Scoring throughput at 32x32 (demo teacher, 2 threads): the shipped predictor, and the rate a
   predictor with student embeddings would have, on an evolution-like stream and on uniform draws.

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

#: Variants trained like the shipped predictor, by the inputs they use (S: student embedding, A: architecture
#: encoding, T: teacher embedding) and whether they adapt to the task.
ABLATIONS = {"S + A + T (all inputs, as in the DaSS paper)": {"use": ("student", "arch", "teacher")},
             "A + T": {"use": ("arch", "teacher")},
             "S + T (no A)": {"use": ("student", "teacher")},
             "S + A (no T)": {"use": ("student", "arch")},
             "A only": {"use": ("arch",)},
             "A + T without adaptation": {"use": ("arch", "teacher"), "adapt": False}}


WHY_MISSED = """
### Why the "+0.10 over the best baseline" target is missed, and what the data would need

On these synthetic 16 px tasks a student's accuracy after KD is mostly explained by its size: FLOPs alone
reach 0.89 and synflow (which tracks parameter magnitudes through depth) 0.93, against a seed-noise
ceiling of 0.975, so a learned predictor has little room to add. The student embedding (S) hurt both in
cross-validation and on the held-out tasks. Likely reasons, not verified: at 16 px the stage-4 maps are
2x2, and the recipe may retrain each student far enough from its remapped start that its initial
function says little. Tried: the
ranking loss weight, more steps, adaptation on/off, the student maps with their difference to the
teacher's, 8 vs 16 probe images (see the cross-validation section). To separate DaSS from size proxies
the database would need tasks where shape matters beyond size (higher resolution, real images), more
students per task with two seeds, more and more varied teachers (here 13 tasks, 2 teacher shapes), and
a KD schedule closer to the one users deploy.
"""


def _table(report: dict) -> str:
    tasks = report["heldout_tasks"]
    head = "| method | " + " | ".join(tasks) + " | mean Spearman | mean Kendall | mean top-5 | mean regret (pts) |"
    lines = [head, "|" + "---|" * (len(tasks) + 5)]
    order = sorted(report["mean"], key=lambda m: (m != "dass", m == "ceiling", -report["mean"][m]["spearman"]))
    for m in order:
        mean = report["mean"][m]
        cells = " | ".join(f"{report['tasks'][t][m]['spearman']:.3f}" for t in tasks)
        nan = float("nan")  # the simulated ceiling has no Kendall, top-5 or full-range regret
        lines.append(f"| {m} | {cells} | {mean['spearman']:.3f} | {mean.get('kendall', nan):.3f} | "
                     f"{mean.get('top5', nan):.2f} | {mean.get('regret', nan):.2f} |")
    return "\n".join(lines)


def _ablations(tasks: list, meta: dict, members: int, steps: int | None) -> str:
    held = [t for t in tasks if t.heldout]
    base = TrainConfig.from_dict(meta["train"])
    if steps:
        base = replace(base, steps=steps)
    lines = [f"Shipped: inputs {'+'.join(u[0].upper() for u in base.use)}, adaptation {'on' if base.adapt else 'off'}.",
             "", "| variant | " + " | ".join(t.name for t in held) + " | mean Spearman | mean regret (pts) |",
             "|" + "---|" * (len(held) + 3)]
    for name, change in ABLATIONS.items():
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


def _rate(scorer, space, stream: str) -> tuple[int, float]:
    """Candidates/s of ``scorer`` on an evolution-like stream (a population, then 20 generations of 75
    mutations/crossovers of the best 25) or on 2,000 uniform random students (cold cache)."""
    import random

    if stream == "uniform":
        archs = space.sample_many(2000, seed=3)
        t0 = time.perf_counter()
        for i in range(0, len(archs), 250):
            scorer(archs[i:i + 250])
        return len(archs), len(archs) / (time.perf_counter() - t0)
    rng = random.Random(0)
    pop = space.sample_many(100, seed=0)
    t0 = time.perf_counter()
    scores = list(scorer(pop))
    n = len(pop)
    for _ in range(20):
        best = [a for _, a in sorted(zip(scores, pop), key=lambda p: -p[0])[:25]]
        children = [space.mutate(rng.choice(best), rng, 0.3) for _ in range(50)]
        children += [space.crossover(rng.choice(best), rng.choice(best), rng) for _ in range(25)]
        new = list(scorer(children))
        n += len(children)
        pop, scores = best + children, [*sorted(scores, reverse=True)[:25], *new]
    return n, n / (time.perf_counter() - t0)


def _throughput() -> str:
    from dass_edge.data import load_task
    from dass_edge.predictor.embeddings import probe_batch
    from dass_edge.predictor.encoding import RELATIVE_ENCODING_LENGTH
    from dass_edge.predictor.fast_embed import StudentEmbedder
    from dass_edge.predictor.model import DaSSPredictor
    from dass_edge.predictor.scoring import StudentScorer, load_scorer
    from dass_edge.space import SearchSpace
    from dass_edge.training.teacher import load_teacher

    torch.set_num_threads(2)
    teacher, tmeta = load_teacher(None)
    data = load_task(tmeta["task"], resolution=teacher.spec.resolution)
    space = SearchSpace(teacher.spec)
    lines = ["| predictor inputs | stream | candidates | candidates/s |", "|---|---|---|---|"]
    results = {}
    for stream in ("evolution", "uniform"):
        scorer = load_scorer(teacher, data, teacher_meta=tmeta)
        n, rate = _rate(scorer, space, stream)
        results[("shipped", stream)] = rate
        lines.append(f"| shipped ({'+'.join(u[0].upper() for u in scorer.models[0].use)}) | {stream} | {n} | "
                     f"{rate:,.0f} |")
    for stream in ("evolution", "uniform"):  # the speed an S+A+T predictor would have (weights do not matter)
        model = DaSSPredictor(32, RELATIVE_ENCODING_LENGTH, use=("student", "arch", "teacher")).eval()
        probe = probe_batch(data.train, teacher.spec.mean, teacher.spec.std)
        scorer = StudentScorer([model], {}, teacher, float(tmeta["val_acc"]), StudentEmbedder(teacher, probe))
        n, rate = _rate(scorer, space, stream)
        results[("S+A+T", stream)] = rate
        lines.append(f"| S+A+T (student embeddings, {probe.shape[0]}-image probe) | {stream} | {n} | {rate:,.0f} |")
    ok = results[("shipped", "evolution")] >= 500 and results[("shipped", "uniform")] >= 500
    return "\n".join(lines) + (
        f"\n\nTarget: >= 500 candidates/s at 32x32 on 2 cores: shipped predictor {'met' if ok else 'NOT met'}. "
        "It needs no per-student embedding (the teacher's is computed once per search); with student "
        "embeddings the rate is the S+A+T rows' (embeddings cached by prefix, so an evolution stream is faster "
        f"than uniform draws): {results[('S+A+T', 'evolution')] / results[('shipped', 'evolution')]:.3f}x "
        "the shipped rate on the evolution stream.")


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
    report = evaluate_heldout(models, tasks, rows, teachers, plots_dir=RESULTS / "predictor_plots",
                              calibration=meta.get("calibration"))
    (RESULTS / "predictor_eval.json").write_text(json.dumps(report, indent=1))
    mean = report["mean"]
    baselines = {m: v for m, v in mean.items() if m not in ("dass", "dass_no_adapt", "ceiling", "seed_vs_seed")}
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
            + (f"- Calibrated accuracy (teacher-anchored, fitted on meta-training tasks): mean absolute error "
               f"{d['mae']:.2f} points on the held-out tasks.\n" if "mae" in d else "")
            + f"- Mean regret: DaSS {d['regret']:.2f} points; lowest baseline {best_regret} "
            f"{baselines[best_regret]['regret']:.2f} (target: beat every baseline: "
            f"{'met' if d['regret'] < baselines[best_regret]['regret'] else 'NOT met'}).\n"
            "- Plots (predicted vs true per held-out task): `benchmarks/results/predictor_plots/`.\n")
    body += WHY_MISSED
    saved = RESULTS / "predictor_ablations.txt"  # not a fragment: run.py assembles *.md
    if "ablations" not in skip:
        saved.write_text(_ablations(tasks, meta, args.members, args.steps) + f"\n\n({args.members} members each.)\n")
    if saved.is_file():
        body += ("\n### Ablations (ensembles trained and scored the same way)\n\n"
                 + ("" if "ablations" not in skip else "From the last run with ablations (`--skip ablations` reuses "
                    "it; they do not depend on the shipped weights).\n\n") + saved.read_text())
    if "throughput" not in skip:
        body += "\n### Scoring throughput (demo teacher, 32x32, 2 threads)\n\n" + _throughput() + "\n"
    write_fragment("predictor", "DaSS predictor (held-out tasks)", "python benchmarks/bench_predictor.py", body)
    print(body)


if __name__ == "__main__":
    main()

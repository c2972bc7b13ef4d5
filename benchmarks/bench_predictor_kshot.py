"""K-shot adaptation under latency budgets → benchmarks/results/predictor_kshot_latency.md.

The zero-shot predictor's weights transfer poorly between tasks (``bench_predictor_pertask.py``: fitted on a
task's own labels its features reach a latency-budget regret of 0.5-0.8 points, the meta-learned weights
0.84-1.17, FLOPs 0.93-0.96). ``search --support RUN...`` adapts the shipped hybrid to students the user has
already distilled on their own task. This measures what that buys where the search decides, under latency
budgets: for K = 0, 5, 10, 20 random students of a task shown to the model, the latency-budget regret and
latency-band rho on the task's *other* students, against FLOPs and a ridge fitted on the K students alone
(the same features, no meta-learned prior), on the same students.

* meta-training tasks: leave-one-task-out (the model is fitted on the other meta-training tasks);
* held-out tasks (information only): the model fitted on every meta-training task.

Costs: each student's p50 latency from this machine's CPU table for its teacher (tasks without one sit out).
Interval: 95% bootstrap over tasks (resampled with replacement) of the mean paired difference to FLOPs.

    python benchmarks/bench_predictor_kshot.py --db shipped --db /work/s10/set5.jsonl [--draws 5]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.bench_predictor_cv import _subset, latency_costs, load_cv_tasks  # noqa: E402
from benchmarks.common import RESULTS, task_bootstrap, task_set_text, write_fragment  # noqa: E402

KS = (5, 10, 20)
MIN_LEFT = 24  # students a task must keep after showing K (3 latency bands of 8)
SUPPORT_ALPHA = 10.0  # ridge penalty of the task-only fit (standardized features)
LOG = RESULTS / "predictor_kshot_latency.jsonl"


def _metrics(scores: np.ndarray, task, lat: np.ndarray) -> dict[str, float]:
    from dass_edge.predictor.band_metrics import budgeted_metrics

    pts = task.labels.numpy().astype(float) * 100.0
    m = budgeted_metrics(scores, pts, lat, task.teacher_shaped().numpy())
    return {"latency_regret": m["budget_regret"]["mean"], "latency_band": m["band_spearman"]}


def _task_only(task, idx: np.ndarray) -> np.ndarray:
    """Scores of a ridge on the hybrid's unmodulated features fitted on the K shown students alone."""
    from dass_edge.predictor.strong_baselines import ridge_features

    x = ridge_features(task)
    mu, sd = x[idx].mean(0), np.where(x[idx].std(0) > 1e-9, x[idx].std(0), 1.0)
    z = (x - mu) / sd
    y = task.labels.numpy().astype(float)[idx]
    w = np.linalg.solve(z[idx].T @ z[idx] + SUPPORT_ALPHA * np.eye(z.shape[1]), z[idx].T @ (y - y.mean()))
    return z @ w


def simulate(tasks: list, draws: int) -> list[dict]:
    """One record per (task, K, draw): each method's metrics on the students not shown."""
    from dass_edge.predictor.hybrid import KSHOT_STRENGTH, HybridPredictor
    from dass_edge.predictor.pipeline import HYBRID_DEFAULTS

    train = sorted((t for t in tasks if not t.heldout), key=lambda t: t.name)
    held = sorted((t for t in tasks if t.heldout), key=lambda t: t.name)
    everyone = HybridPredictor(**HYBRID_DEFAULTS).fit(train)
    out = []
    for t in train + held:
        lat = latency_costs(t)
        if lat is None:
            print(f"{t.name}: no CPU table here, sits out", flush=True)
            continue
        model = everyone if t.heldout else HybridPredictor(**HYBRID_DEFAULTS).fit([u for u in train if u is not t])
        base = model.score(t)
        for k in KS:
            if len(t) - k < MIN_LEFT:
                continue
            for draw in range(draws):
                idx = torch.randperm(len(t), generator=torch.Generator().manual_seed(draw))[:k].numpy()
                keep = np.setdiff1d(np.arange(len(t)), idx)
                sub, costs = _subset(t, keep), lat[keep]
                scores = {"flops": np.log(np.asarray(t.flops, dtype=float)), "zero-shot": base,
                          "adapted": model.adapted(t, idx, KSHOT_STRENGTH).score(t), "task-only": _task_only(t, idx)}
                rec = {"task": t.name, "heldout": bool(t.heldout), "k": k, "draw": draw,
                       **{m: _metrics(s[keep], sub, costs) for m, s in scores.items()}}
                out.append(rec)
        print(t.name, "done", flush=True)
    return out


def summarize(recs: list[dict]) -> str:
    methods = ("flops", "zero-shot", "adapted", "task-only")
    lines = ["| tasks | K | tasks (draws) | " + " | ".join(f"{m} regret" for m in methods)
             + " | adapted - FLOPs regret [95%] | " + " | ".join(f"{m} band rho" for m in methods) + " |",
             "|---|---:|---|" + "---:|" * (2 * len(methods) + 1)]
    for held in (False, True):
        for k in KS:
            rows = [r for r in recs if r["heldout"] == held and r["k"] == k]
            if not rows:
                continue
            names = sorted({r["task"] for r in rows})
            # per task: mean over draws, then the mean over tasks (each task counts once)
            per = {m: {q: np.array([np.nanmean([r[m][q] for r in rows if r["task"] == n]) for n in names])
                       for q in ("latency_regret", "latency_band")} for m in methods}
            lo, hi = task_bootstrap(per["adapted"]["latency_regret"] - per["flops"]["latency_regret"])
            diff = float(np.mean(per["adapted"]["latency_regret"] - per["flops"]["latency_regret"]))
            draws = len(rows) // len(names)
            lines.append(f"| {'held out (information)' if held else 'meta-training (leave-one-task-out)'} | {k} | "
                         f"{len(names)} ({draws}) | "
                         + " | ".join(f"{per[m]['latency_regret'].mean():.2f}" for m in methods)
                         + f" | {diff:+.2f} [{lo:+.2f}, {hi:+.2f}] | "
                         + " | ".join(f"{np.nanmean(per[m]['latency_band']):.3f}" for m in methods) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", action="append", metavar="DB", help="databases read as one (like meta train --db)")
    parser.add_argument("--draws", type=int, default=5, help="random support sets per task and K")
    parser.add_argument("--report", action="store_true", help="only rewrite the fragment from the stored records")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if not args.report:
        head = {"command": "python benchmarks/bench_predictor_kshot.py " + " ".join(sys.argv[1:])}
        LOG.write_text("".join(json.dumps(r) + "\n" for r in [head, *simulate(load_cv_tasks(args.db), args.draws)]))
    lines = [json.loads(x) for x in LOG.read_text().splitlines() if x.strip()]
    command, recs = lines[0]["command"], lines[1:]
    body = ("K random students of a task shown to the model (draws per task and K in brackets); every figure is "
            "on the task's other students, the same ones for every method. `zero-shot`: the shipped recipe "
            "without adaptation; `adapted`: `HybridPredictor.adapted` (what `search --support` does, prior "
            "strength 10); `task-only`: a ridge on the same features fitted on the K students alone. Regret: "
            "points of KD accuracy lost to the best student under latency budgets at the 20-80% quantiles, mean "
            "over tasks; the interval resamples tasks.\n\n" + summarize(recs))
    write_fragment("predictor_kshot_latency", "DaSS predictor: K-shot adaptation under latency budgets",
                   command, task_set_text(command) + body)
    print(body)


if __name__ == "__main__":
    main()

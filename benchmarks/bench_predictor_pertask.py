"""Diagnosis: do the hybrid's features rank students inside one task, when fitted on that task?

The meta-learned hybrid fits one set of weights (modulated by the teacher's probe profile) across tasks. This
fits the same features per task instead, on that task's own labels: in-sample (an upper bound) and 5-fold inside
the task (what a user with ~50 distilled students of their own task could reach), and scores both with the
latency-budget regret and band Spearman that ``bench_predictor_cv.py --latency-bands`` reports for the
meta-learned recipes. If the per-task fit is far better than the cross-task one, the features carry the signal
and the gap is in how it transfers between tasks.

    python benchmarks/bench_predictor_pertask.py --db shipped --db metadb/metadb_v2.jsonl
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from benchmarks.common import write_fragment  # noqa: E402


def _ridge_pred(z: np.ndarray, y: np.ndarray, train: np.ndarray, alpha: float) -> np.ndarray:
    zt, yt = z[train], y[train]
    coef = np.linalg.solve(zt.T @ zt + alpha * np.eye(z.shape[1]), zt.T @ (yt - yt.mean()))
    return z @ coef


def per_task(dbs: list[str], alphas=(1.0, 10.0, 100.0), folds: int = 5) -> list[dict]:
    import bench_predictor_cv as cv

    from dass_edge.predictor.band_metrics import budgeted_metrics
    from dass_edge.predictor.hybrid import standardized
    from dass_edge.predictor.strong_baselines import ridge_features

    out = []
    for t in sorted((t for t in cv.load_cv_tasks(dbs) if not t.heldout), key=lambda t: t.name):
        lat = cv.latency_costs(t)
        if lat is None:
            continue
        pts = t.labels.numpy().astype(float) * 100.0
        excl = t.teacher_shaped().numpy()
        x = ridge_features(t)
        z = (x - x.mean(0)) / np.where(x.std(0) > 1e-9, x.std(0), 1.0)
        y = standardized(pts)
        preds = {"flops": np.log(np.asarray(t.flops, dtype=float))}
        for a in alphas:
            preds[f"in-sample, alpha {a:g}"] = _ridge_pred(z, y, np.ones(len(y), bool), a)
            split = np.random.default_rng(0).permutation(len(y)) % folds
            cvp = np.zeros(len(y))
            for f in range(folds):
                cvp[split == f] = _ridge_pred(z, y, split != f, a)[split == f]
            preds[f"{folds}-fold in task, alpha {a:g}"] = cvp
        row = {"task": t.name, "students": len(t)}
        for k, p in preds.items():
            m = budgeted_metrics(p, pts, lat, excl)
            row[k] = (m["band_spearman"], m["budget_regret"]["mean"])
        out.append(row)
        print(row["task"], {k: tuple(round(v, 3) for v in val) for k, val in row.items() if isinstance(val, tuple)},
              flush=True)
    return out


def _body(rows: list[dict], dbs: list[str]) -> str:
    keys = [k for k in rows[0] if isinstance(rows[0][k], tuple)]
    lines = ["Per meta-training task with a CPU table here, the hybrid's size and shape features "
             "(`ridge_features`, the shipped recipe's inputs without the probe modulation) fitted on the task's "
             f"own labels; databases {', '.join(dbs)}. Latency bands and budgets as in the equal-latency CV "
             "section (this machine's CPU tables).", "",
             "| fit | latency band rho | latency-budget regret (pts) |", "|---|---|---|"]
    for k in keys:
        lines.append(f"| {k} | {np.nanmean([r[k][0] for r in rows]):.3f} | {np.mean([r[k][1] for r in rows]):.2f} |")
    lines += ["", f"{len(rows)} tasks: {', '.join(r['task'] for r in rows)}. Compare with the cross-task recipes "
              "of the equal-latency CV section on the same tasks (the shipped recipe's cross-validated latency "
              "regret, FLOPs'). In-sample figures are an upper bound; the 5-fold ones use 80% of a task's "
              "students as labels, far more than a user has."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", action="append", metavar="DB", help="databases read as one (as bench_predictor_cv)")
    args = ap.parse_args()
    dbs = args.db or ["shipped"]
    rows = per_task(dbs)
    write_fragment("predictor_pertask", "Predictor features fitted per task (diagnosis of the transfer gap)",
                   "python benchmarks/bench_predictor_pertask.py " + " ".join(f"--db {d}" for d in dbs),
                   _body(rows, dbs))


if __name__ == "__main__":
    main()

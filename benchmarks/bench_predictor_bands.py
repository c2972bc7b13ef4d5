"""Budgeted evaluation of the shipped predictor → benchmarks/results/predictor_bands.md (and .json).

The question ``search`` asks is budgeted: among the students that fit, which distills best. This runs
``dass-edge meta eval`` (as a library call) and reports, per method, the Spearman inside bands of
near-equal FLOPs (and latency, for held-out teachers this machine has a CPU table for), the regret under
budgets at the 20/40/60/80% cost quantiles (teacher-shaped student excluded), the full-range Spearman, the
simulated seed-noise ceiling, and paired bootstrap intervals of DaSS minus each baseline.

    python benchmarks/bench_predictor_bands.py                    # evaluate, then write the fragment
    python benchmarks/bench_predictor_bands.py --report eval.json # from 'dass-edge meta eval --json' output

Latency tables: every table in the user store (``DASS_EDGE_TABLES``) at the database's resolution; build
them with ``dass-edge profile --device cpu --resolution 16 --teacher metadb/teachers/<task>.safetensors``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import RESULTS, write_fragment  # noqa: E402

NOT_METHODS = ("ceiling", "seed_vs_seed")


def _evaluate() -> dict:
    from dass_edge.latency.store import find_tables
    from dass_edge.predictor.evaluation import evaluate_heldout
    from dass_edge.predictor.pipeline import default_db_path, load_db, resolve_teachers_dir
    from dass_edge.predictor.store import load_predictor

    db = default_db_path()
    teachers = resolve_teachers_dir(db, None)
    rows, tasks = load_db(db, teachers)
    models, meta = load_predictor(None)
    tables = [t for t, _ in find_tables("cpu")]
    report = evaluate_heldout(models, tasks, rows, teachers, calibration=meta.get("calibration"), tables=tables)
    report["predictor"] = {"trained_at": meta.get("trained_at"), "members": meta["members"]}
    return report


def _f(v: float | None, spec: str = ".3f") -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def _body(report: dict) -> str:
    mean, tasks, held = report["mean"], report["tasks"], report["heldout_tasks"]
    methods = sorted((m for m in mean if m not in NOT_METHODS),
                     key=lambda m: (m != "dass", -(mean[m].get("band_spearman") or -9)))
    latency = any("band_spearman_latency" in tasks[t].get("dass", {}) for t in held)
    lat_tasks = [t for t in held if "band_spearman_latency" in tasks[t].get("dass", {})]
    head = ["method", *(f"band rho {t}" for t in held), "band rho mean", "budget regret (pts)",
            *(["band rho latency", "regret latency (pts)"] if latency else []), "full rho", "DaSS - it: band rho [95%]",
            "DaSS - it: budget regret [95%]"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    boot = report.get("bootstrap", {})

    def interval(m: str, k: str) -> str:
        b = boot.get(m, {}).get(k)
        return f"{b['diff']:+.3f} [{b['lo']:+.3f}, {b['hi']:+.3f}]" if b else ""

    rows = [*methods, "ceiling"]
    for m in rows:
        r = mean[m]
        lat_cells = []
        if latency:
            lat = [tasks[t][m].get("band_spearman_latency") for t in lat_tasks]
            reg = [tasks[t][m]["budget_regret_latency"]["mean"] for t in lat_tasks]
            lat_cells = [_f(sum(lat) / len(lat)), _f(sum(reg) / len(reg), ".2f")]
        name = "ceiling (perfect predictor, simulated seed noise)" if m == "ceiling" else m
        lines.append("| " + " | ".join([name, *(_f(tasks[t][m].get("band_spearman")) for t in held),
                                        _f(r.get("band_spearman")), _f(r["budget_regret"]["mean"], ".2f"),
                                        *lat_cells, _f(r.get("spearman")), interval(m, "band_spearman"),
                                        interval(m, "budget_regret")]) + " |")
    sv = mean.get("seed_vs_seed", {})
    d, c = mean["dass"], mean["ceiling"]
    base = {m: mean[m] for m in methods if m not in ("dass", "dass_no_adapt") and not m.startswith("dass_")}
    best = max(base, key=lambda m: base[m].get("band_spearman") or -9)
    best_reg = min(base, key=lambda m: base[m]["budget_regret"]["mean"])
    quant = " / ".join(f"{d['budget_regret'][q]:.2f}" for q in ("q20", "q40", "q60", "q80"))
    text = "\n".join(lines) + "\n\n"
    text += (f"- Bands: students of a task sorted by FLOPs and cut into equal-count bands of 8 (5 bands of the 40 "
             f"held-out students); Spearman inside each band, mean over bands, then over the {len(held)} held-out "
             "tasks. Budgeted regret: budgets at the 20/40/60/80% FLOPs quantiles of the task's students, best true "
             "accuracy that fits minus the accuracy of the method's top pick that fits (the teacher-shaped student "
             f"excluded); DaSS per quantile {quant} points.\n"
             f"- Inside bands DaSS reaches {d['band_spearman']:.3f} against {best} {base[best]['band_spearman']:.3f} "
             f"(the best baseline there) and a ceiling of {c['band_spearman']:.3f}; lowest budgeted regret of a "
             f"baseline: {best_reg} {base[best_reg]['budget_regret']['mean']:.2f} points, DaSS "
             f"{d['budget_regret']['mean']:.2f}. Full range: DaSS {d['spearman']:.3f}, ceiling {c['spearman']:.3f} "
             f"(seed 1 vs seed 0 on the 20 students per task with both: {_f(sv.get('spearman'))}).\n"
             "- Ceiling: a perfect predictor scored against its own labels plus Gaussian noise with the task's "
             "per-seed noise (from the students trained with two seeds; sd / sqrt(seeds) per student), 500 draws; "
             "the labels already hold one draw of that noise, so it errs a little high. Intervals: paired bootstrap "
             "over students within each task (1000 replicates), DaSS minus the baseline; for regret, negative "
             "favours DaSS.\n")
    if latency:
        # the tables are the ones given to `meta eval --table`, which may come from another machine
        text += (f"- Latency bands use the CPU tables (p50) given to `meta eval --table` and cover "
                 f"{', '.join(lat_tasks)}.\n")
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report", type=Path, help="a 'dass-edge meta eval --json' output to use as is")
    args = parser.parse_args()
    torch.set_num_threads(1)
    report = json.loads(args.report.read_text()) if args.report else _evaluate()
    keep = {k: report[k] for k in ("tasks", "mean", "bootstrap", "heldout_tasks", "train_tasks", "predictor")
            if k in report}
    (RESULTS / "predictor_bands.json").write_text(json.dumps(keep, indent=1))
    cmd = ("python benchmarks/bench_predictor_bands.py (= dass-edge meta eval --json --table <CPU table per held-out "
           "teacher>)")
    write_fragment("predictor_bands", "Predictor on the budgeted question (band Spearman, budgeted regret)", cmd,
                   _body(report))
    print((RESULTS / "predictor_bands.md").read_text())


if __name__ == "__main__":
    main()

"""How many scored students a search needs to reach its own objective's optimum → results/search_effort.md.

A head-to-head compares the picks of searches that differ only in their objective (the predictor, FLOPs, ...), so
each search must find what its objective ranks best; otherwise the comparison measures the optimizer. On the
settings of a head-to-head plan (task, teacher, CPU table and latency budget), the same evolution is run with the
shipped predictor and with FLOPs as objectives at several efforts (``--evals``) and two seeds, and each top pick's
objective is compared with the best any run found. Objectives only: no student is trained, no accuracy is read.

    python benchmarks/bench_search_effort.py [--plan head_to_head_plan_v4.json] [--evals 300,2000,10000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.bench_head_to_head import _plan_table, _settings  # noqa: E402
from benchmarks.common import RESULTS, write_fragment  # noqa: E402

METHODS = {"dass": None, "flops": "flops"}  # column -> load_search_scorer key (None: the shipped predictor)


def run(plan_name: str, evals: list[int], seeds: list[int]) -> list[dict]:
    """One record per (setting, method): the top pick's objective and student at each effort and seed."""
    from dass_edge.predictor.search_scorers import load_search_scorer
    from dass_edge.search.plan import prepare_search
    from dass_edge.search.run import run_search

    data = json.loads((RESULTS / plan_name).read_text())
    out = []
    for task, entry, b in _settings(data):
        table = _plan_table(task, entry)
        for method, key in METHODS.items():
            rec = {"task": task, "budget_ms": b["budget_ms"], "method": method, "runs": []}
            scorer = None  # depends on the teacher and the data only: loaded once, for every effort and seed
            for n in evals:
                for seed in seeds:
                    with tempfile.TemporaryDirectory() as tmp:
                        sp = prepare_search(b["budget_ms"], teacher=entry["teacher"], task=task,
                                            out=Path(tmp) / "run", seed=seed, budget_evals=n, top_k=1, table=table)
                        if scorer is None:
                            scorer = load_search_scorer(key, sp.teacher, sp.data, teacher_meta=sp.teacher_meta)
                        t0 = time.perf_counter()
                        top = run_search(sp, scorer)["top"][0]
                    rec["runs"].append({"evals": n, "seed": seed, "objective": float(top["predicted_acc"]),
                                        "arch_key": top["arch_key"], "seconds": round(time.perf_counter() - t0, 2)})
            print(task, b["budget_ms"], method, [(r["evals"], r["seed"], round(r["objective"], 3))
                                                  for r in rec["runs"]], flush=True)
            out.append(rec)
    return out


def shortfall(method: str, objective: float, best: float) -> float:
    """How far a pick falls short of the best found: points of predicted accuracy, or % of FLOPs."""
    return best - objective if method == "dass" else 100.0 * (best - objective) / best


def report(records: list[dict], plan_name: str, evals: list[int], seeds: list[int]) -> str:
    unit = {"dass": "points of predicted accuracy", "flops": "% of the FLOPs"}
    lines = [f"Settings of `{plan_name}` ({len(records) // len(METHODS)}: task, teacher, CPU table, budget). "
             f"Objective of each run's top pick; the best is the highest any run of the method found in that setting "
             f"(efforts {', '.join(map(str, evals))}; seeds {', '.join(map(str, seeds))}).", "",
             "| method | students scored | seed | settings at the best | mean shortfall | worst shortfall | "
             "median seconds |", "|---|---:|---:|---:|---:|---:|---:|"]
    summary = {}
    for method in METHODS:
        recs = [r for r in records if r["method"] == method]
        for n in evals:
            for seed in seeds:
                gaps, secs = [], []
                for r in recs:
                    best = max(x["objective"] for x in r["runs"])
                    run_ = next(x for x in r["runs"] if x["evals"] == n and x["seed"] == seed)
                    gaps.append(shortfall(method, run_["objective"], best))
                    secs.append(run_["seconds"])
                at_best = sum(g <= 1e-9 for g in gaps)
                summary[(method, n, seed)] = (at_best, statistics.mean(gaps), max(gaps))
                lines.append(f"| {method} | {n} | {seed} | {at_best} of {len(gaps)} | {statistics.mean(gaps):.2f} | "
                             f"{max(gaps):.2f} | {statistics.median(secs):.1f} |")
    lines += ["", "Shortfall: " + "; ".join(f"{m}, {u}" for m, u in unit.items()) + ". Seconds: the search alone "
              "on this shared 2-core CPU (scoring included, setup not), while other jobs ran."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plan", default="head_to_head_plan_v4.json", help="head-to-head plan under results/")
    parser.add_argument("--evals", default="300,2000,10000", help="search efforts (students scored)")
    parser.add_argument("--seeds", default="0,1", help="search seeds")
    args = parser.parse_args()
    evals = [int(x) for x in args.evals.split(",")]
    seeds = [int(x) for x in args.seeds.split(",")]
    torch.set_num_threads(1)
    records = run(args.plan, evals, seeds)
    (RESULTS / "search_effort.json").write_text(json.dumps(records, indent=1) + "\n")
    body = report(records, args.plan, evals, seeds)
    write_fragment("search_effort", "Search effort: how many scored students reach the objective's optimum",
                   f"python benchmarks/bench_search_effort.py --plan {args.plan} --evals {args.evals} "
                   f"--seeds {args.seeds}", body)
    print(body)


if __name__ == "__main__":
    main()

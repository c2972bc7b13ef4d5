"""Short-KD refinement of the search's finalists, simulated on the meta-database → results/refine.md.

``search --refine M --refine-epochs E`` distills the predictor's top-M students that fit the budget for the
first E epochs of the meta-database recipe (its 10-epoch schedule, stopped early) and picks the one with the
best validation accuracy. Every meta-database row stores its per-epoch validation curve (``val_curve``),
and a run stopped after E epochs is the same computation as those epochs of the full run (same seed, same
schedule), so the refinement can be simulated for every student of every task without training anything.

Policy per latency budget (this machine's CPU table for the task's teacher; budgets at the 20-80% cost
quantiles, teacher-shaped student excluded, as in ``budget_regret``): finalists = the ranker's top M among
the students that fit; pick = the finalist with the highest accuracy after E epochs. Regret: the best
label that fits minus the pick's label, in points.

* meta-training tasks: rankers fitted leave-one-task-out; one seed, so the early accuracy and the label
  come from the same run (correlated noise flatters larger E);
* held-out tasks (information only): early accuracy from seed 0, label from seed 1 (an independent run).

    python benchmarks/bench_refine.py --db shipped --db metadb/metadb_v2.jsonl

``--variants`` (→ results/refine_variants.md) simulates session 12's alternatives at the shipped cost: other
finalist sources (the ridge baseline), successive halving from 1 epoch, and a learned remaining-gain correction
of the early accuracy (``VARIANTS``, ``remaining_gain``), each against a rule written before it ran.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.bench_predictor_cv import latency_costs, load_cv_tasks  # noqa: E402
from benchmarks.common import RESULTS, SET6, task_bootstrap, task_set_text, write_fragment  # noqa: E402

FINALISTS = (1, 2, 4, 8, 16)
EPOCHS = (1, 2, 3)
MAX_COST = 20  # epochs of the 10-epoch recipe the default may spend (2 KD runs; session 11 rule)
LOG = RESULTS / "refine.jsonl"
HEDGED = "dass half, FLOPs half, one per depth pattern"  # the second rule's variant
RULE = RESULTS / "refine_rule.txt"  # the choice rule, written before the simulation first ran


def refined_regret(rank: np.ndarray, early: np.ndarray, true: np.ndarray, costs: np.ndarray,
                   exclude: np.ndarray, finalists: int, archs: list | None = None,
                   hedge: np.ndarray | None = None, quantiles=(0.2, 0.4, 0.6, 0.8)) -> float:
    """Mean regret over the budget quantiles of "top-``finalists`` by ``rank`` that fit, then best ``early``"
    (``archs``: finalists as the search takes them, one per depth pattern)."""
    from dass_edge.search.refine import pick_finalists, refine_order

    keep = ~exclude
    budgets = np.quantile(costs[keep], quantiles)
    out = []
    for b in budgets:
        fit = np.where(keep & (costs <= b))[0]
        if archs is None:
            top = fit[np.argsort(-rank[fit], kind="stable")[:finalists]]
        else:
            top = fit[pick_finalists([archs[i] for i in fit], rank[fit], finalists,
                                     None if hedge is None else hedge[fit])]
        pick = top[refine_order(early[top], rank[top])[0]]
        out.append(true[fit].max() - true[pick])
    return float(np.mean(out))


def _curves(dbs: list[str]) -> dict:
    """``{(task, seed): {arch_key: row}}`` of the rows that carry a validation curve."""
    from dass_edge.metadb.sources import combine_dbs, resolve_db_paths

    out: dict = defaultdict(dict)
    for r in combine_dbs(resolve_db_paths(dbs)).rows:
        if r.get("val_curve"):
            out[(r["task"], int(r["seed"]))][r["arch_key"]] = r
    return out


def simulated_tasks(dbs: list[str], with_ridge: bool = False):
    """Per task that can be simulated: ``(task, true, costs, exclude, archs, curves, rankers, sizes)``.

    Rankers are fitted leave-one-task-out on meta-training tasks (all of them for held-out ones); ``true``
    is the label (held out: seed 1's accuracy, an independent run), ``curves[i, e - 1]`` seed 0's accuracy
    of student i at epoch e."""
    from dass_edge.predictor.hybrid import HybridPredictor
    from dass_edge.predictor.pipeline import HYBRID_DEFAULTS
    from dass_edge.predictor.strong_baselines import RidgeBaseline

    tasks = load_cv_tasks(dbs)
    rows = _curves(dbs)
    train = sorted((t for t in tasks if not t.heldout), key=lambda t: t.name)
    everyone = HybridPredictor(**HYBRID_DEFAULTS).fit(train)
    ridge_all = RidgeBaseline().fit(train) if with_ridge else None
    for t in sorted(tasks, key=lambda t: (t.heldout, t.name)):
        lat = latency_costs(t)
        keys = [a.key() for a in t.archs]
        seed0 = rows.get((t.name, 0), {})
        if lat is None or not all(k in seed0 for k in keys):
            print(f"{t.name}: no CPU table here or students without a curve; sits out", flush=True)
            continue
        others = [u for u in train if u is not t]
        model = everyone if t.heldout else HybridPredictor(**HYBRID_DEFAULTS).fit(others)
        idx = np.arange(len(t))
        if t.heldout:  # label: an independent run (seed 1) where the task has one
            seed1 = rows.get((t.name, 1), {})
            idx = np.array([i for i, k in enumerate(keys) if k in seed1])
            if len(idx) < 24:
                continue
            true = np.array([seed1[keys[i]]["val_acc"] for i in idx], dtype=float)
        else:
            true = t.labels.numpy().astype(float)[idx] * 100.0
        rankers = {"dass": model.score(t)[idx], "flops": np.log(np.asarray(t.flops, dtype=float))[idx]}
        if with_ridge:
            ridge = ridge_all if t.heldout else RidgeBaseline().fit(others)
            rankers["ridge"] = np.asarray(ridge.score(t), dtype=float)[idx]
        curves = np.array([seed0[keys[i]]["val_curve"] for i in idx], dtype=float)
        sizes = np.log(np.array([t.flops, t.params], dtype=float).T[idx])  # log FLOPs, log parameters
        yield t, true, lat[idx], t.teacher_shaped().numpy()[idx], [t.archs[i] for i in idx], curves, rankers, sizes


def simulate(dbs: list[str]) -> list[dict]:
    """Regret of every (ranker, M, E) of the session 11 grid, per task."""
    recs = []
    for t, true, costs, exclude, archs, curves, rankers, _ in simulated_tasks(dbs):
        for ranker, rank in [*rankers.items(), ("dass, one per depth pattern", rankers["dass"]),
                             (HEDGED, rankers["dass"])]:
            for e in EPOCHS:
                early = curves[:, e - 1]
                for m in FINALISTS:
                    spread = archs if ranker in ("dass, one per depth pattern", HEDGED) else None
                    hedge = rankers["flops"] if ranker == HEDGED else None
                    recs.append({"task": t.name, "heldout": bool(t.heldout), "ranker": ranker, "finalists": m,
                                 "epochs": e,
                                 "regret": refined_regret(rank, early, true, costs, exclude, m, spread, hedge)})
        print(t.name, "done", flush=True)
    return recs


#: Session 12's rule (results/refine_rule.txt): finalist sources [(ranker, depth patterns)] and rungs
#: [(epochs, survivors)]; V0 is the shipped refinement.
VARIANTS = {
    "V0": ([("dass", 2), ("flops", 2)], [(3, 1)]),
    "V1": ([("dass", 2), ("flops", 1), ("ridge", 1)], [(3, 1)]),
    "V2": ([("dass", 3), ("flops", 3)], [(1, 3), (3, 1)]),
    "V3": ([("dass", 2), ("flops", 2), ("ridge", 2)], [(1, 3), (3, 1)]),
    "V4": ([("dass", 2), ("flops", 2), ("ridge", 2)], [(2, 1)]),
}
VARIANT_LOG = RESULTS / "refine_variants.jsonl"


def successive_halving(run: Callable[[int, int], float], n: int, rank: Sequence[float],
                       rungs: Sequence[tuple[int, int]]) -> list[tuple[int, float]]:
    """Short runs in rungs (session 12's halving variants; not adopted, so it lives here): ``rungs`` =
    [(epochs, keep), ...]; every survivor is run on to ``epochs`` (the same run continued, so a rung costs
    only the epochs it adds), then the ``keep`` ahead survive.

    ``run(i, epochs)`` returns finalist ``i``'s validation accuracy after ``epochs`` epochs; ties go to
    ``rank`` (higher first). Returns ``[(finalist, accuracy at its last rung)]``: the last rung's survivors
    best first, then those dropped earlier, later rungs first."""
    from dass_edge.search.refine import refine_order

    alive = list(range(n))
    dropped: list[tuple[int, float]] = []
    last: list[tuple[int, float]] = []
    for epochs, keep in rungs:
        accs = [run(i, epochs) for i in alive]
        order = refine_order(accs, [rank[i] for i in alive])
        ranked = [(alive[j], accs[j]) for j in order]
        dropped = ranked[keep:] + dropped
        alive = [i for i, _ in ranked[:keep]]
        last = ranked[:keep]
    return last + dropped


def variant_cost(sources: list, rungs: list) -> int:
    """Epochs of KD a variant spends: every finalist to the first rung, survivors on to each next one."""
    alive, done, total = sum(c for _, c in sources), 0, 0
    for epochs, keep in rungs:
        total += alive * (epochs - done)
        alive, done = min(alive, keep), epochs
    return total


def variant_regret(rankers: dict, curves: np.ndarray, true: np.ndarray, costs: np.ndarray, exclude: np.ndarray,
                   archs: list, sources: list, rungs: list, quantiles=(0.2, 0.4, 0.6, 0.8)) -> float:
    """Mean regret over the budget quantiles of a variant, run through the search's own functions
    (:func:`finalists_from`, :func:`successive_halving`); ``curves[i, e - 1]``: student i's accuracy at epoch e."""
    from dass_edge.search.refine import finalists_from

    keep = ~exclude
    out = []
    for b in np.quantile(costs[keep], quantiles):
        fit = np.where(keep & (costs <= b))[0]
        chosen = finalists_from([archs[i] for i in fit], [(r, rankers[r][fit], c) for r, c in sources])
        fin = [int(fit[j]) for j, _ in chosen]
        order = successive_halving(lambda j, e, fin=fin: float(curves[fin[j], e - 1]), len(fin), rankers["dass"][fin],
                                   rungs)
        out.append(true[fit].max() - true[fin[order[0][0]]])
    return float(np.mean(out))


def simulate_variants(dbs: list[str]) -> list[dict]:
    """Regret of each of :data:`VARIANTS` and of the rankers' own top-1 picks, per task."""
    recs = []
    tasks = list(simulated_tasks(dbs, with_ridge=True))
    for t, true, costs, exclude, archs, curves, rankers, sizes in tasks:
        others = [(u[5], u[1], u[7]) for u in tasks if not u[0].heldout and u[0] is not t]
        gain = remaining_gain(others, curves, sizes)  # the fourth rule's V5
        for name, (sources, rungs) in [*VARIANTS.items(), *((f"{r} top-1", ([(r, 1)], [(1, 1)])) for r in rankers)]:
            if name.endswith("top-1"):  # no refinement: the ranker's best that fits
                regret = refined_regret(rankers[name.split()[0]], curves[:, 0], true, costs, exclude, 1)
            else:
                regret = variant_regret(rankers, curves, true, costs, exclude, archs, sources, rungs)
            recs.append({"task": t.name, "heldout": bool(t.heldout), "variant": name, "regret": regret})
        v0 = VARIANTS["V0"]
        recs.append({"task": t.name, "heldout": bool(t.heldout), "variant": "V5",
                     "regret": variant_regret(rankers, curves + gain[:, None], true, costs, exclude, archs, *v0)})
        print(t.name, "done", flush=True)
    return recs


GAIN_EPOCH = 3  # V5: the remaining gain is predicted from the curve up to this epoch (V0's E)


def _gain_features(curves: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Epoch-3 rise, and log FLOPs and log parameters as differences to the task's mean."""
    e = GAIN_EPOCH
    return np.column_stack([curves[:, e - 1] - curves[:, e - 2], sizes - sizes.mean(0)])


def remaining_gain(train: list, curves: np.ndarray, sizes: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """The fourth rule's predicted final-minus-epoch-3 accuracy of each student of a task, from a ridge fitted on
    ``train`` = [(curves, labels, sizes)] of other tasks (standardized inputs)."""
    x = np.concatenate([_gain_features(c, z) for c, _, z in train])
    y = np.concatenate([lab - c[:, GAIN_EPOCH - 1] for c, lab, _ in train])
    mean, scale = x.mean(0), np.where(x.std(0) > 1e-9, x.std(0), 1.0)
    z = (x - mean) / scale
    coef = np.linalg.solve(z.T @ z + alpha * np.eye(z.shape[1]), z.T @ (y - y.mean()))
    return ((_gain_features(curves, sizes) - mean) / scale) @ coef + y.mean()


def variant_table(recs: list[dict]) -> tuple[str, str]:
    """The variants' table and the session 12 rule's verdict (meta-training rows only)."""
    by: dict = defaultdict(dict)
    for r in recs:
        by[(r["heldout"], r["variant"])][r["task"]] = r["regret"]

    def cell(h: bool, name: str, base: str) -> str:
        got, ref = by.get((h, name), {}), by.get((h, base), {})
        if not got:
            return "-"
        names = sorted(got)
        d = np.array([got[n] - ref[n] for n in names])
        lo, hi = task_bootstrap(d)
        return f"{np.mean(list(got.values())):.2f} ({d.mean():+.2f} [{lo:+.2f}, {hi:+.2f}])"

    lines = ["| variant | finalists (depth patterns) by | rungs (epochs: survivors) | KD epochs | meta-training regret "
             "(vs V0 [95%]) | held-out regret, label from seed 1 (vs V0) |", "|---|---|---|---:|---|---|"]
    for name, (sources, rungs) in VARIANTS.items():
        lines.append(f"| {name} | {' + '.join(f'{c} {r}' for r, c in sources)} | "
                     f"{', '.join(f'{e}: {k}' for e, k in rungs)} | {variant_cost(sources, rungs)} | "
                     f"{cell(False, name, 'V0')} | {cell(True, name, 'V0')} |")
    if by.get((False, "V5")):
        lines.append(f"| V5 | V0's | 3: 1, ranked by accuracy + predicted remaining gain | "
                     f"{variant_cost(*VARIANTS['V0'])} | {cell(False, 'V5', 'V0')} | {cell(True, 'V5', 'V0')} |")
    for r in ("dass", "flops", "ridge"):
        name = f"{r} top-1"
        lines.append(f"| {name} (no refinement) | - | - | 0 | {cell(False, name, 'V0')} | {cell(True, name, 'V0')} |")
    means = {n: np.mean(list(by[(False, n)].values())) for n in VARIANTS if by.get((False, n))}
    best = min((n for n in means if n != "V0"), key=lambda n: means[n])
    adopt = means[best] <= means["V0"] - 0.05
    verdict = (f"The session 12 rule: the best variant on meta-training tasks is {best} (regret {means[best]:.2f} "
               f"against V0's {means['V0']:.2f}); " + (f"it is lower by 0.05 points or more, so {best} replaces V0."
                                                     if adopt else "it is not 0.05 points lower, so V0 stays."))
    if by.get((False, "V5")):
        v5 = np.mean(list(by[(False, "V5")].values()))
        verdict += (f" The fourth rule: V5 (learned remaining gain) has regret {v5:.2f} against V0's "
                    f"{means['V0']:.2f}; "
                    + ("it is lower by 0.05 points or more, so V5 replaces V0." if v5 <= means["V0"] - 0.05
                       else "it is not 0.05 points lower, so V0 stays."))
    return "\n".join(lines) + "\n", verdict


def table(recs: list[dict]) -> tuple[str, dict]:
    """The grid's table and the rule's choice (from the meta-training rows only)."""
    by: dict = defaultdict(dict)  # (heldout, ranker, m, e) -> task -> regret
    for r in recs:
        by[(r["heldout"], r["ranker"], r["finalists"], r["epochs"])][r["task"]] = r["regret"]
    base = {h: by.get((h, "flops", 1, 1), {}) for h in (False, True)}  # FLOPs top-1: no refinement

    def cell(h: bool, ranker: str, m: int, e: int) -> str:
        got = by.get((h, ranker, m, e), {})
        if not got:
            return "-"
        names = sorted(got)
        d = np.array([got[n] - base[h][n] for n in names])
        lo, hi = task_bootstrap(d)
        return f"{np.mean(list(got.values())):.2f} ({d.mean():+.2f} [{lo:+.2f}, {hi:+.2f}])"

    # The rule: lowest meta-training regret with ranker dass among M * E <= MAX_COST, cheaper within 0.05.
    cands = [(np.mean(list(by[(False, "dass", m, e)].values())), m * e, m, e)
             for m in FINALISTS for e in EPOCHS if m > 1 and m * e <= MAX_COST and by.get((False, "dass", m, e))]
    best = min(c[0] for c in cands)
    chosen = min((c for c in cands if c[0] <= best + 0.05), key=lambda c: (c[1], c[0]))
    lines = ["| finalists by | M | E | KD runs | meta-training regret (vs FLOPs top-1 [95%]) | held-out regret, "
             "label from an independent seed (vs FLOPs top-1) |", "|---|---:|---:|---:|---|---|"]
    for ranker in ("dass", "dass, one per depth pattern", HEDGED, "flops"):
        for m in FINALISTS:
            for e in (EPOCHS if m > 1 else EPOCHS[:1]):
                mark = " **(chosen)**" if ranker == "dass" and (m, e) == chosen[2:] else ""
                lines.append(f"| {ranker}{mark} | {m} | {e if m > 1 else '-'} | {m * e / 10 if m > 1 else 0:.1f} | "
                             f"{cell(False, ranker, m, e)} | {cell(True, ranker, m, e)} |")
    tasks = {h: len(base[h]) for h in (False, True)}
    choice = {"finalists": chosen[2], "epochs": chosen[3], "meta_regret": round(float(chosen[0]), 3),
              "tasks": tasks}
    return "\n".join(lines) + "\n", choice


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", action="append", metavar="DB", help="databases read as one (like meta train --db)")
    parser.add_argument("--report", action="store_true", help="only rewrite the fragment from the stored records")
    parser.add_argument("--variants", action="store_true", help="session 12's finalist variants (refine_variants.md)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.variants:
        main_variants(args)
        return
    if not args.report:
        head = {"command": "python benchmarks/bench_refine.py " + " ".join(sys.argv[1:])}
        LOG.write_text("".join(json.dumps(r) + "\n" for r in [head, *simulate(args.db)]))
    lines = [json.loads(x) for x in LOG.read_text().splitlines() if x.strip()]
    command, recs = lines[0]["command"], lines[1:]
    body, choice = table(recs)
    text = (f"Tasks: {choice['tasks'][False]} meta-training, {choice['tasks'][True]} held out with a second seed. "
            "M = 1 is the ranker's own top-1 pick (no refinement). KD runs: the refinement's cost in runs of the "
            "10-epoch recipe (M x E / 10). In brackets: the paired difference to FLOPs' top-1 pick, with a 95% "
            "bootstrap interval over tasks (negative favours the row).\n\n" + body
            + f"\nThe session 11 rule (lowest meta-training regret with M x E <= {MAX_COST} epochs; a cheaper "
            f"setting within 0.05 points wins) chooses M = {choice['finalists']}, E = {choice['epochs']} "
            f"(meta-training regret {choice['meta_regret']:.2f}).\n"
            "\nThe search takes its finalists one per depth pattern (`dass, one per depth pattern`): its top "
            "students are mostly width variants of one shape, unlike the database's band-sampled students, where "
            "both ways of taking finalists score alike.\n\n" + RULE.read_text())
    write_fragment("refine", "Search with short-KD refinement of the finalists (simulated from stored curves)",
                   command, task_set_text(command) + text)
    print(text)


def main_variants(args: argparse.Namespace) -> None:
    if not args.report:
        head = {"command": "python benchmarks/bench_refine.py " + " ".join(sys.argv[1:])}
        VARIANT_LOG.write_text("".join(json.dumps(r) + "\n" for r in [head, *simulate_variants(args.db)]))
    lines = [json.loads(x) for x in VARIANT_LOG.read_text().splitlines() if x.strip()]
    body, verdict = variant_table(lines[1:])
    n = {h: len({r["task"] for r in lines[1:] if r["heldout"] == h}) for h in (False, True)}
    text = (f"Tasks: {n[False]} meta-training, {n[True]} held out with a second seed. One finalist per depth pattern; "
            "each source in turn adds its best student of each of its best patterns not yet taken. Rungs: every "
            "survivor continues the same run to that epoch, then the given number stay. In brackets: the paired "
            "difference to V0 (the shipped refinement) with a 95% bootstrap interval over tasks (negative favours "
            "the row).\n\n" + body + "\n" + verdict + "\n")
    write_fragment("refine_variants", "Refinement variants: where finalists come from, and rungs (simulated)",
                   lines[0]["command"], task_set_text(lines[0]["command"], SET6) + text)
    print(text)


if __name__ == "__main__":
    main()

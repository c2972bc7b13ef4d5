"""The short-KD refinement measured against an independent seed on meta-training tasks → results/refine_seeds.md.

``bench_refine.py`` simulates the refinement from the meta-database's stored per-epoch curves. On the
meta-training tasks every student has one seed, so the early accuracy that ranks the finalists and the label
that scores the pick come from the same run: their noise is shared, which flatters long refinements (epoch 10
*is* the label). Whether more epochs per finalist, or fewer finalists trained longer, would pick better cannot
be read from those curves. This bench trains the refinement's finalists again with another seed (seed 1, the
first 6 epochs of the 10-epoch recipe, the search's own ``distill(stop_after=...)``) and ranks them by *that*
run, while the label stays seed 0's: what a user's refinement is, an independent short run.

* ``plan``: per meta-training task, the finalists each policy would distill at the 4 budget quantiles
  (FLOPs budgets: latency tables are per machine and this bench should not depend on which machine it runs;
  predictor fitted leave-one-task-out, as in ``bench_refine.py``) → ``refine_seeds_plan.json``.
* ``run``: distills every planned finalist with seed 1 for 6 epochs; one JSON line per finalist appended to
  ``refine_seeds.jsonl`` (resumable: finished finalists are skipped, the one in progress resumes per epoch).
* ``report``: regret of each policy and epoch count, ranked by the seed-1 run (honest) and, beside it, by
  seed 0's own curve (the flattered simulation) → ``refine_seeds.md``.

    python benchmarks/bench_refine_seeds.py plan --db shipped --db metadb/metadb_v2.jsonl
    OMP_NUM_THREADS=1 python benchmarks/bench_refine_seeds.py run --shard 1/2   # and 2/2 on the other core
    python benchmarks/bench_refine_seeds.py report
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import RESULTS, task_bootstrap, write_fragment  # noqa: E402

PLAN = RESULTS / "refine_seeds_plan.json"
HELDOUT_PLAN = RESULTS / "refine_seeds_heldout.json"
LOG = RESULTS / "refine_seeds.jsonl"
RULE = RESULTS / "refine_rule.txt"  # the fifth rule (session 13) fixes the choice before any run
QUANTILES = (0.2, 0.4, 0.6, 0.8)
SEED = 1  # the independent run; the database's label is seed 0
MAX_EPOCHS = 6
#: Policies: finalist sources [(ranker, depth patterns)] as ``finalists_from`` takes them. V0 is the shipped one.
POLICIES = {"V0": [("dass", 2), ("flops", 2)], "V6": [("dass", 1), ("flops", 1)]}
EPOCHS = tuple(range(1, MAX_EPOCHS + 1))


def task_plan(t, rank: np.ndarray, students: np.ndarray | None = None) -> tuple[dict, set[int]]:
    """One task's budgets (FLOPs quantiles over ``students``, default all but the teacher-shaped one), each
    policy's finalists there (arch keys), and the indices of every finalist."""
    from dass_edge.search.refine import finalists_from

    flops = np.log(np.asarray(t.flops, dtype=float))
    keys = [a.key() for a in t.archs]
    keep = ~t.teacher_shaped().numpy() if students is None else students
    budgets = []
    needed: set[int] = set()
    for b in np.quantile(flops[keep], QUANTILES):
        fit = np.where(keep & (flops <= b))[0]
        picks = {}
        for name, sources in POLICIES.items():
            scored = {"dass": rank[fit], "flops": flops[fit]}
            chosen = finalists_from([t.archs[i] for i in fit], [(r, scored[r], c) for r, c in sources])
            picks[name] = [keys[int(fit[j])] for j, _ in chosen]
            needed.update(int(fit[j]) for j, _ in chosen)
        budgets.append({"budget_log_flops": float(b), "fit": [keys[i] for i in fit], "finalists": picks})
    info = {"dass": {k: float(s) for k, s in zip(keys, rank)}, "flops": {k: float(f) for k, f in zip(keys, flops)},
            "budgets": budgets}
    return info, needed


def plan(dbs: list[str]) -> dict:
    """Every (task, budget, policy) finalist list of the meta-training tasks (predictor fitted leave-one-task-out),
    and the distinct finalists to train."""
    from benchmarks.bench_predictor_cv import load_cv_tasks
    from dass_edge.predictor.hybrid import HybridPredictor
    from dass_edge.predictor.pipeline import HYBRID_DEFAULTS

    tasks = load_cv_tasks(dbs)
    train = sorted((t for t in tasks if not t.heldout), key=lambda t: t.name)
    rows, = _db_rows(dbs)
    out: dict = {"dbs": dbs, "quantiles": list(QUANTILES), "policies": POLICIES, "tasks": {}, "jobs": []}
    for t in train:
        model = HybridPredictor(**HYBRID_DEFAULTS).fit([u for u in train if u is not t])
        info, needed = task_plan(t, np.asarray(model.score(t), dtype=float))
        out["tasks"][t.name] = info
        keys = [a.key() for a in t.archs]
        first = rows[(t.name, keys[0])]
        for i in sorted(needed):
            r = rows[(t.name, keys[i])]
            out["jobs"].append({"task": t.name, "arch": r["arch"], "arch_key": keys[i], "resolution": r["resolution"],
                                "teacher_file": first["teacher_file"], "teacher_sha256": first["teacher_sha256"],
                                "seconds_seed0": r["seconds"]})
        print(f"{t.name}: {len(needed)} finalists", flush=True)
    return out


def plan_heldout(dbs: list[str]) -> dict:
    """The held-out tasks' finalists (predictor fitted on every meta-training task), among the students the
    database holds with both seeds: their stored seed-1 curves are the independent run (information only)."""
    from benchmarks.bench_predictor_cv import load_cv_tasks
    from dass_edge.predictor.hybrid import HybridPredictor
    from dass_edge.predictor.pipeline import HYBRID_DEFAULTS

    tasks = load_cv_tasks(dbs)
    model = HybridPredictor(**HYBRID_DEFAULTS).fit(sorted((t for t in tasks if not t.heldout), key=lambda t: t.name))
    seed1, = _db_rows(dbs, SEED)
    out: dict = {"dbs": dbs, "quantiles": list(QUANTILES), "policies": POLICIES, "tasks": {}}
    for t in sorted((t for t in tasks if t.heldout), key=lambda t: t.name):
        both = np.array([(t.name, a.key()) in seed1 for a in t.archs]) & ~t.teacher_shaped().numpy()
        if both.sum() < 24:
            print(f"{t.name}: {both.sum()} students with both seeds; sits out", flush=True)
            continue
        out["tasks"][t.name], _ = task_plan(t, np.asarray(model.score(t), dtype=float), both)
    return out


def _db_rows(dbs: list[str], *seeds: int) -> list[dict]:
    """Per seed asked for (default 0): ``{(task, arch_key): that seed's row}``, from one read of the databases."""
    from dass_edge.metadb.sources import combine_dbs, resolve_db_paths

    rows = combine_dbs(resolve_db_paths(dbs)).rows
    return [{(r["task"], r["arch_key"]): r for r in rows if int(r["seed"]) == seed} for seed in seeds or (0,)]


def read_log(log: Path, field: str) -> dict:
    """``{(task, arch_key): record[field]}`` of every finalist in a bench's log (a line cut by kill -9 is left out,
    so that finalist is trained again)."""
    out = {}
    for line in log.read_text().splitlines() if log.is_file() else []:
        try:
            r = json.loads(line)
            out[(r["task"], r["arch_key"])] = r[field]
        except (ValueError, KeyError):
            continue
    return out


def _logged() -> dict:
    """``{(task, arch_key): seed-1 curve}`` of every finalist in this bench's log."""
    return read_log(LOG, "val_curve")


def shard_todo(shard: tuple[int, int], done: dict, threads: int):
    """Yield ``(index, count, job, teacher, data)`` for this shard's planned finalists not in ``done``, the
    teacher and task loaded once per task; torch set to ``threads`` threads. Shared by the benches that train the
    plan's finalists again (this one, ``bench_refine_signals.py``)."""
    import torch

    from dass_edge.data import load_task
    from dass_edge.metadb.sources import resolve_db_paths
    from dass_edge.models.checkpoint import load_checkpoint
    from dass_edge.predictor.pipeline import resolve_teachers_dir

    doc = json.loads(PLAN.read_text())
    teachers = resolve_teachers_dir(resolve_db_paths(doc["dbs"])[-1], None)
    k, n = shard
    jobs = [j for i, j in enumerate(doc["jobs"]) if i % n == k - 1]
    todo = [j for j in jobs if (j["task"], j["arch_key"]) not in done]
    print(f"shard {k}/{n}: {len(jobs)} finalists, {len(jobs) - len(todo)} done, {len(todo)} to go", flush=True)
    torch.set_num_threads(threads)
    loaded: dict = {}
    for i, j in enumerate(todo, 1):
        if j["task"] not in loaded:
            loaded.clear()
            teacher, _ = load_checkpoint(teachers / j["teacher_file"])
            loaded[j["task"]] = (teacher, load_task(j["task"], resolution=j["resolution"]))
        yield (i, len(todo), j, *loaded[j["task"]])


def run(shard: tuple[int, int], threads: int, work: Path) -> None:
    """Distill this shard's planned finalists that are not in the log yet (seed 1, first 6 epochs)."""
    import torch

    from dass_edge.metadb.store import append_row
    from dass_edge.space import Arch
    from dass_edge.training.distill import KDConfig, distill

    work.mkdir(parents=True, exist_ok=True)
    for i, count, j, teacher, data in shard_todo(shard, _logged(), threads):
        t0 = time.perf_counter()
        torch.manual_seed(SEED)
        resume = work / f"{j['task']}_{j['arch_key']}_s{SEED}.resume.pt"
        result = distill(teacher, Arch.from_dict(j["arch"]), data, KDConfig().with_seed(SEED), stop_after=MAX_EPOCHS,
                         resume_path=resume, cache_dir=work / "teacher_cache", teacher_sha256=j["teacher_sha256"])
        curve = [round(float(h["val_acc"]), 3) for h in result.history]
        if len(curve) != MAX_EPOCHS or not np.all(np.isfinite(curve)):
            raise SystemExit(f"{j['task']} {j['arch_key']}: unexpected curve {curve}")
        rec = {"task": j["task"], "arch_key": j["arch_key"], "seed": SEED, "val_curve": curve,
               "seconds": round(time.perf_counter() - t0, 1), "threads": threads}
        append_row(LOG, rec)  # one whole line per finalist, on disk before the next starts (shards share the log)
        resume.unlink(missing_ok=True)
        print(f"[{i}/{count}] {j['task']} {j['arch_key']}: {curve} ({rec['seconds']} s)", flush=True)


def early_score(curve: list[float], epochs: int, ranking: str) -> float:
    """What ranks a finalist after ``epochs`` epochs: its accuracy then (``last``) or the mean of the last two
    epochs' (``mean2``, the sixth rule's twin)."""
    return float(curve[epochs - 1]) if ranking == "last" or epochs < 2 else float(np.mean(curve[epochs - 2:epochs]))


def regrets(doc: dict, early: dict, labels: dict, policy: str, epochs: int, ranking: str = "last") -> dict[str, float]:
    """Per task: mean over the budgets of (best label that fits - label of the finalist ahead at ``epochs``);
    tasks with a finalist lacking its early curve sit out."""
    from dass_edge.search.refine import refine_order

    out = {}
    for task, info in doc["tasks"].items():
        vals = []
        for b in info["budgets"]:
            fin = b["finalists"][policy]
            if not all((task, k) in early for k in fin):
                break
            order = refine_order([early_score(early[(task, k)], epochs, ranking) for k in fin],
                                 [info["dass"][k] for k in fin])
            vals.append(_best_fit(task, b, labels) - labels[(task, fin[order[0]])])
        else:
            out[task] = float(np.mean(vals))
    return out


def _best_fit(task: str, budget: dict, labels: dict) -> float:
    """The best label among the students that fit the budget: what every regret is measured from."""
    return max(labels[(task, k)] for k in budget["fit"])


def top1(doc: dict, labels: dict, by: str) -> dict[str, float]:
    """Per task: the regret of one ranker's best that fits (no refinement); ``by``: ``dass`` or ``flops``."""
    out = {}
    for task, info in doc["tasks"].items():
        vals = []
        for b in info["budgets"]:
            pick = max(b["fit"], key=lambda k: info[by][k])
            vals.append(_best_fit(task, b, labels) - labels[(task, pick)])
        out[task] = float(np.mean(vals))
    return out


def oracle(doc: dict, labels: dict, policy: str) -> dict[str, float]:
    """Per task: the regret of the best finalist (the floor any ranking of these finalists can reach)."""
    return {task: float(np.mean([_best_fit(task, b, labels) - max(labels[(task, k)] for k in b["finalists"][policy])
                                 for b in info["budgets"]]))
            for task, info in doc["tasks"].items()}


#: The fifth rule's candidates (policy, E); each also has its sixth-rule twin (ranking "mean2").
CANDIDATES = [("V0", 3), ("V0", 4), ("V0", 5), ("V6", 3), ("V6", 4), ("V6", 5), ("V6", 6)]
SHIPPED = ("V0", 3, "last")


def cost(policy: str, epochs: int) -> int:
    return sum(c for _, c in POLICIES[policy]) * epochs


def verdict(table: dict, tasks: list[str], n_tasks: int) -> str:
    """The fifth and sixth rules applied to the honest (seed-1) regrets."""
    if len(tasks) < n_tasks:
        return f"Partial ({len(tasks)} of {n_tasks} tasks): by the rule, no verdict until every task is in."
    mean = {c: float(np.mean([table[c][t] for t in tasks])) for c in table}
    cands = [(p, e, r) for p, e in CANDIDATES for r in ("last", "mean2")]
    # a twin within 0.05 of its plain candidate counts as the plain one (simpler)
    cands = [c for c in cands if c[2] == "last" or mean[c] < mean[(c[0], c[1], "last")] - 0.05]
    best = min(mean[c] for c in cands)
    selected = min((c for c in cands if mean[c] <= best + 0.05), key=lambda c: (cost(c[0], c[1]), mean[c]))
    ref = mean[SHIPPED]
    d = np.array([table[selected][t] - table[SHIPPED][t] for t in tasks])
    lo, hi = task_bootstrap(d)
    name = f"{selected[0]} at E = {selected[1]} ({selected[2]}, {cost(*selected[:2])} epochs)"
    if selected == SHIPPED:
        return f"Verdict: the selected candidate is the shipped one, {name}; nothing changes."
    if selected[:2] == SHIPPED[:2]:  # the shipped setting's twin, more than 0.05 lower (the sixth rule)
        return (f"Verdict: {name} replaces the shipped ranking at the same cost: regret {mean[selected]:.2f} vs "
                f"{ref:.2f} ({d.mean():+.2f} [{lo:+.2f}, {hi:+.2f}]).")
    if cost(*selected[:2]) < cost(*SHIPPED[:2]) and mean[selected] <= ref + 0.05:
        return (f"Verdict: {name} replaces V0 at E = 3: cheaper, regret {mean[selected]:.2f} vs {ref:.2f} "
                f"({d.mean():+.2f} [{lo:+.2f}, {hi:+.2f}]).")
    if cost(*selected[:2]) > cost(*SHIPPED[:2]) and d.mean() <= -0.10 and hi < 0:
        return (f"Verdict: {name} replaces V0 at E = 3: regret {mean[selected]:.2f} vs {ref:.2f} "
                f"({d.mean():+.2f} [{lo:+.2f}, {hi:+.2f}]).")
    return (f"Verdict: V0 at E = 3 stays; the selected candidate {name} has regret {mean[selected]:.2f} vs {ref:.2f} "
            f"({d.mean():+.2f} [{lo:+.2f}, {hi:+.2f}]), short of the rule's bar.")


def honest(doc: dict, early: dict, labels: dict) -> dict:
    """``{(policy, E, ranking): {task: regret}}`` for every policy, epoch count and ranking."""
    return {(p, e, r): regrets(doc, early, labels, p, e, r)
            for p in POLICIES for e in EPOCHS for r in ("last", "mean2")}


def noise_split(doc: dict, indep: dict, same: dict, tasks: list[str]) -> str:
    """How much of a finalist's early accuracy is training noise (two seeds, the same validation images) and
    how much the finite validation set alone would cause (binomial): whether evaluating on more images could
    cut the refinement's misorderings."""
    from dass_edge.data import load_task

    lines = ["| E | seed-to-seed SD of one run's accuracy (points) | binomial SD of one accuracy on the task's "
             "validation images (what more images could remove, at most) | finalists |",
             "|---|---|---|---|"]
    n_val = {}
    for t in tasks:
        res = next(j["resolution"] for j in doc["jobs"] if j["task"] == t)
        n_val[t] = len(load_task(t, resolution=res).val)
    for e in EPOCHS:
        diffs, binom = [], []
        for (t, k), curve in indep.items():
            if t in n_val and (t, k) in same:
                a, b = curve[e - 1], same[(t, k)][e - 1]
                diffs.append(a - b)
                p = (a + b) / 200.0
                binom.append(100.0 * np.sqrt(p * (1 - p) / n_val[t]))
        if diffs:
            lines.append(f"| {e} | {np.std(diffs) / np.sqrt(2):.2f} | {np.sqrt(np.mean(np.square(binom))):.2f} "
                         f"| {len(diffs)} |")
    return "\n".join(lines)


def report() -> str:
    doc = json.loads(PLAN.read_text())
    rows, seed1 = _db_rows(doc["dbs"], 0, SEED)  # the held-out plan reads the same databases
    labels = {k: float(r["val_acc"]) for k, r in rows.items()}
    same = {k: r["val_curve"] for k, r in rows.items()}
    indep = _logged()
    table = honest(doc, indep, labels)
    complete = sorted(set.intersection(*(set(v) for v in table.values())))
    if not complete:
        return "No task has every finalist trained again yet."
    held: dict = {}
    if HELDOUT_PLAN.is_file():  # the held-out tasks' stored seed-1 curves: information only
        hdoc = json.loads(HELDOUT_PLAN.read_text())
        held = honest(hdoc, {k: r["val_curve"] for k, r in seed1.items()}, labels)
    ref = table[SHIPPED]
    lines = [f"Meta-training tasks with every finalist trained again: {len(complete)} of {len(doc['tasks'])}. Label: "
             "seed 0's validation accuracy (the database's); regret in points, mean of 4 FLOPs-budget quantiles. "
             f"Held-out ({len(next(iter(held.values()), {}))} tasks, stored seed-1 curves, students with both seeds): "
             "information only. The choice: `benchmarks/results/refine_rule.txt`, session 13's fifth and sixth rules, "
             "written before any seed-1 finalist was trained; its verdict is under the table.\n",
             "| policy | E | KD epochs | ranked by seed 1 at epoch E | vs shipped [95% task bootstrap] "
             "| seed 1, mean of epochs E-1, E | ranked by the label's own run (flattered) | held-out: seed 1 at E "
             "/ mean of E-1, E |",
             "|---|---|---|---|---|---|---|---|"]
    for policy in POLICIES:
        for e in EPOCHS:
            cells = []
            for r in ("last", "mean2"):
                got = [table[(policy, e, r)][t] for t in complete]
                d = np.array([table[(policy, e, r)][t] - ref[t] for t in complete])
                lo, hi = task_bootstrap(d)
                cells.append((np.mean(got), d.mean(), lo, hi))
            flat = regrets(doc, same, labels, policy, e)
            mark = " (shipped)" if (policy, e) == SHIPPED[:2] else ""
            h = " / ".join(f"{np.mean(list(held[(policy, e, r)].values())):.2f}" for r in ("last", "mean2")) \
                if held else "-"
            lines.append(f"| {policy}{mark} | {e} | {cost(policy, e)} | {cells[0][0]:.2f} | {cells[0][1]:+.2f} "
                         f"[{cells[0][2]:+.2f}, {cells[0][3]:+.2f}] | {cells[1][0]:.2f} "
                         f"| {np.mean([flat[t] for t in complete]):.2f} | {h} |")
    lines += ["", "Without refinement (top-1 of the ranker, same tasks): "
              + ", ".join(f"{by} {np.mean([v for t, v in top1(doc, labels, by).items() if t in complete]):.2f}"
                          for by in ("dass", "flops"))
              + "; best finalist (a perfect ranking of the finalists): "
              + ", ".join(f"{p} {np.mean([v for t, v in oracle(doc, labels, p).items() if t in complete]):.2f}"
                          for p in POLICIES) + ".", "", verdict(table, complete, len(doc["tasks"])), "",
              "Where the early accuracy's noise comes from (the same finalists, seed 1 here against seed 0 in the "
              "database, the same validation images; the database's seed 0 of the v1 tasks ran on a GPU):", "",
              noise_split(doc, indep, same, complete)]
    if held:
        lines += ["", heldout_floor(hdoc, seed1, labels)]
    return "\n".join(lines)


def heldout_floor(hdoc: dict, seed1: dict, labels: dict) -> str:
    """On the held-out tasks (both seeds stored, information only): V0's finalists ranked by seed 1's *full* run
    (its best accuracy over 10 epochs) against seed 1 at epoch 3, both scored by seed 0's label: how much of the
    refinement's regret any single independent run, however long, leaves (the label's own seed noise)."""
    full = {k: [float(r["val_acc"])] * 10 for k, r in seed1.items()}
    early = {k: r["val_curve"] for k, r in seed1.items()}
    by_full, by_early = regrets(hdoc, full, labels, "V0", 10), regrets(hdoc, early, labels, "V0", 3)
    best = oracle(hdoc, labels, "V0")
    mean = {name: np.mean(list(v.values())) for name, v in (("early", by_early), ("full", by_full), ("best", best))}
    return (f"Held-out tasks ({len(by_full)}, information only), V0's finalists scored by seed 0's label: ranked by "
            f"seed 1 at epoch 3 {mean['early']:.2f}, by seed 1's whole 10-epoch run {mean['full']:.2f}, by the label "
            f"itself {mean['best']:.2f}. The gap between the last two is what even a whole independent run leaves.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("plan")
    p.add_argument("--db", action="append", required=True)
    p.add_argument("--heldout", action="store_true",
                   help="plan the held-out tasks instead (their seed-1 curves are stored; information only)")
    r = sub.add_parser("run")
    r.add_argument("--shard", default="1/1", help="k/n: every n-th finalist from the k-th")
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "refine_seeds")
    sub.add_parser("report")
    args = ap.parse_args()
    if args.cmd == "plan" and args.heldout:
        HELDOUT_PLAN.write_text(json.dumps(plan_heldout(args.db), indent=1) + "\n")
    elif args.cmd == "plan":
        doc = plan(args.db)
        PLAN.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"{len(doc['jobs'])} finalists to train")
    elif args.cmd == "run":
        k, n = (int(x) for x in args.shard.split("/"))
        run((k, n), args.threads, args.work)
    else:
        body = report()
        print(body)
        write_fragment("refine_seeds", "Refinement against an independent seed (meta-training tasks)",
                       "python benchmarks/bench_refine_seeds.py plan --db shipped --db metadb/metadb_v2.jsonl "
                       "(and plan --heldout ...); OMP_NUM_THREADS=1 ... run --shard k/2, k = 1, 2 in parallel; "
                       "... report", body)


if __name__ == "__main__":
    main()

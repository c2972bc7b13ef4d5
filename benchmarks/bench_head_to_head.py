"""Head-to-head: the same search with DaSS and with proxies in its place → benchmarks/results/head_to_head.md.

On the meta-database's held-out tasks (teachers and datasets never seen in meta-training) and two
binding latency budgets each, run ``search`` (same evolution, same seed, same table, same budget)
once per method -- the shipped search (``dass+refine``: DaSS, then the short-KD refinement ``dass-edge
search`` runs by default), DaSS alone (``dass``, ``--refine 0``), the zero-shot baselines ``flops``,
``synflow``, ``ridge`` and ``diswot``, and FLOPs with the same refinement (``flops+refine``) -- and
KD-train (meta-database recipe; ``--seeds 0,1`` for two seeds) each method's top pick plus 6 random
students (seed 0) that fit the same budget. Reported: each pick's test accuracy, the shipped search's
margin over the best zero-shot proxy pick and over the median random student, every other method's margin
over the same proxies, the task's seed gap (mean |seed 0 - seed 1| of the database's students), the shipped search
against each method alone (a 95% interval resampling tasks), and a figure of every setting (``head_to_head*.png``).

Stages (resumable; trained students are appended to ``benchmarks/results/head_to_head.jsonl``, one
short line each):

    python benchmarks/bench_head_to_head.py            # plan (if none), picks, train, report
    python benchmarks/bench_head_to_head.py plan [--db shipped --db metadb/metadb_v2.jsonl]  # budgets, randoms
    python benchmarks/bench_head_to_head.py plan --from head_to_head_plan_v3.json  # another plan's settings
    python benchmarks/bench_head_to_head.py picks [--evals N]
    python benchmarks/bench_head_to_head.py train [--train-device cuda --workers 8]
    python benchmarks/bench_head_to_head.py report

Budgets are milliseconds of this machine's CPU table for each teacher, read by the ``plan`` stage (profile one
first: ``dass-edge profile --device cpu --teacher metadb/teachers/TASK.safetensors``), which keeps a copy of each
table under ``results/head_to_head_tables/``; ``picks`` reads those copies, so a plan's picks can be added on any
machine, later. ``--plan NAME`` starts or continues another plan (``head_to_head_plan_v3.json``: session 16, AMD VM
tables; its report goes to ``results/head_to_head_v3.md``); the default plan (session 9-12, Intel VM) kept no copies,
and its picks refuse to run where that machine's tables are missing.

Each plan records how many students every search scores (``evals``): new plans take the search's default
(``dass-edge search --budget-evals``), the plans made before it was recorded (v1, v3) scored 300, which leaves most
searches short of their own objective's optimum (session 25); ``head_to_head_plan_v4.json`` is v3's settings
(``plan --from``) searched at the default.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import RESULTS, teacher_space_latency, write_fragment  # noqa: E402
from dass_edge.io import atomic_write, atomic_write_json, file_sha256  # noqa: E402
from dass_edge.space import Arch  # noqa: E402

TEACHERS = Path(__file__).resolve().parents[1] / "metadb" / "teachers"
BUDGET_FRACTIONS = (0.35, 0.65)  # of the way from the fastest student's latency to the teacher's
N_RANDOM = 6
SHIPPED = "dass+refine"  # the search as `dass-edge search` runs it by default: the predictor, then short-KD refinement
PROXIES = ("flops", "synflow", "ridge", "diswot")  # zero-cost and size proxies, zero-shot
#: Picked by default: the shipped search, DaSS zero-shot (``--refine 0``), the proxies, and FLOPs given the same
#: refinement (so the refinement's share of the gain is visible).
METHODS = (SHIPPED, "dass", *PROXIES, "flops+refine")
DEFAULT_PLAN = "head_to_head_plan.json"
PLAN = RESULTS / DEFAULT_PLAN  # --plan NAME picks another plan under results/ (e.g. a v3 on another CPU)
ROWS = RESULTS / "head_to_head.jsonl"  # students trained, keyed by (task, arch, seed): shared by every plan
#: Copies of the latency tables plans were made with: a plan's budgets are milliseconds of one machine's tables, so
#: picks made later (another session, another CPU) must read the same tables, not that machine's own.
PLAN_TABLES = RESULTS / "head_to_head_tables"


def _heldout_tasks(dbs: list[str] | None = None) -> dict[str, dict]:
    """Held-out tasks of the databases (``--db`` values; default: the shipped one), with their seed gap
    (points) and input resolution."""
    from dass_edge.metadb.sources import combine_dbs, resolve_db_paths

    by_task: dict[str, dict] = {}
    resolution: dict[str, int] = {}
    for r in combine_dbs(resolve_db_paths(dbs)).rows:
        if r.get("heldout"):
            resolution[r["task"]] = int(r.get("resolution", 16))
            by_task.setdefault(r["task"], {}).setdefault(r["arch_key"], {})[int(r["seed"])] = float(r["val_acc"])
    out = {}
    for task, students in sorted(by_task.items()):
        gaps = [abs(s[0] - s[1]) for s in students.values() if 0 in s and 1 in s]
        out[task] = {"seed_gap": round(statistics.mean(gaps), 3) if gaps else None, "seed_pairs": len(gaps),
                     "resolution": resolution[task]}
    return out


#: Students each search of a plan that records no ``evals`` scored (v1, v3).
LEGACY_EVALS = 300


def _plan_evals(data: dict) -> int:
    return int(data.get("evals", LEGACY_EVALS))


def plan(args: argparse.Namespace) -> None:
    """Budgets and random students of every held-out task not yet in the plan (tasks already planned, with
    their picks, are kept: adding a database adds settings), or with ``--from`` another plan's settings."""
    from dass_edge.search.algorithms import DEFAULT_BUDGET_EVALS

    evals = args.evals or DEFAULT_BUDGET_EVALS  # a new plan's effort
    if args.source:
        if PLAN.is_file():
            raise SystemExit(f"error: {PLAN.name} exists; --from starts a new plan")
        source = json.loads((RESULTS / args.source).read_text())
        tasks = {t: {**e, "budgets": [{**b, "picks": {}} for b in e["budgets"]]} for t, e in source["tasks"].items()}
        atomic_write_json(PLAN, {"evals": evals, "from": args.source, "tasks": tasks})
        print(f"{PLAN.name}: {sum(len(e['budgets']) for e in tasks.values())} settings of {args.source}, searches "
              f"scoring {evals} students")
        return
    out = json.loads(PLAN.read_text()) if PLAN.is_file() else {"evals": evals, "tasks": {}}
    for task, info in _heldout_tasks(args.db).items():
        if task in out["tasks"]:
            continue
        path = TEACHERS / f"{task}.safetensors"
        _, space, latency, table = teacher_space_latency(path)
        PLAN_TABLES.mkdir(parents=True, exist_ok=True)
        stored = PLAN_TABLES / table.path.name
        if not stored.is_file():
            shutil.copyfile(table.path, stored)
        fastest, slowest = latency(space.smallest_arch()), latency(space.teacher_arch())
        pool = space.sample_many(5000, seed=1)
        lat = {a: latency(a) for a in pool}
        budgets = []
        for f in BUDGET_FRACTIONS:
            budget = round(fastest + f * (slowest - fastest), 4)
            feasible = [a for a in pool if lat[a] <= budget]
            randoms = random.Random(f"{task}/{f}").sample(feasible, N_RANDOM)
            budgets.append({"budget_ms": budget, "fraction": f, "feasible_share": round(len(feasible) / len(pool), 3),
                            "random": [a.to_dict() for a in randoms], "picks": {}})
        out["tasks"][task] = {"teacher": str(path.relative_to(TEACHERS.parents[1])),
                              "teacher_sha256": file_sha256(path),
                              "fastest_ms": round(fastest, 4), "teacher_ms": round(slowest, 4), **info,
                              "table": table.path.name, "table_file": str(stored.relative_to(RESULTS)),
                              "budgets": budgets}
    atomic_write_json(PLAN, out)
    print(json.dumps({t: [b["budget_ms"] for b in v["budgets"]] for t, v in out["tasks"].items()}))


def _settings(data: dict) -> list[tuple[str, dict, dict]]:
    """(task, entry, budget) in the order work is done: every task's first budget, then the second ones,
    so that a run cut short covers as many tasks as it can."""
    out = [(i, task, entry, b) for task, entry in data["tasks"].items() for i, b in enumerate(entry["budgets"])]
    return [(task, entry, b) for _, task, entry, b in sorted(out, key=lambda x: x[0])]


def picks(args: argparse.Namespace) -> None:
    """Top-1 pick of every method per (task, budget); already-picked methods are kept (resumable)."""
    from dass_edge.predictor.search_scorers import load_search_scorer
    from dass_edge.search.plan import prepare_search
    from dass_edge.search.refine import REFINE_FINALISTS
    from dass_edge.search.run import run_search

    data = json.loads(PLAN.read_text())
    evals = _plan_evals(data)
    if args.evals is not None and args.evals != evals:
        raise SystemExit(f"error: {PLAN.name}'s searches score {evals} students; --evals {args.evals} would mix "
                         "efforts in one plan (start another with plan --from)")
    tables: dict[str, Path] = {}  # resolved when a task first needs a pick (a complete plan needs no table)
    files = dict(spec.split("=", 1) for spec in args.predictor_file)  # NAME=PATH: another predictor file
    methods = [m for m in args.methods.split(",") if m] + list(files)
    for task, entry, b in _settings(data):
        for method in methods:
            if method in b["picks"]:
                continue
            # NAME+refine: the same predictor, then search's short-KD refinement of its finalists
            base, refine = method.removesuffix("+refine"), REFINE_FINALISTS if method.endswith("+refine") else 0
            if task not in tables:
                tables[task] = _plan_table(task, entry)
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                sp = prepare_search(b["budget_ms"], teacher=entry["teacher"], task=task, out=Path(tmp) / "run",
                                    seed=args.seed, budget_evals=evals, top_k=1, refine=refine,
                                    table=tables[task])
                key = files.get(base, None if base == "dass" else base)
                scorer = load_search_scorer(key, sp.teacher, sp.data, teacher_meta=sp.teacher_meta)
                record = run_search(sp, scorer)
            top = record["top"][0]
            b["picks"][method] = {"arch": top["arch"], "score": top["predicted_acc"],
                                  "latency_ms": top["latency_ms"], "evaluated": record["evaluated"],
                                  "seconds": round(time.perf_counter() - t0, 1),
                                  **({"refine": record["refine"]} if record.get("refine") else {})}
            print(task, b["budget_ms"], method, top["arch_key"], b["picks"][method]["seconds"], flush=True)
            _save_pick(task, entry["budgets"].index(b), method, b["picks"][method])


def _plan_table(task: str, entry: dict) -> Path:
    """The latency table ``task``'s budgets were set with: the plan's stored copy, else (plans made before copies
    were kept) this machine's own table only if it is that same table; anything else would pick under other
    latencies than the budgets and the methods already picked."""
    if entry.get("table_file"):
        return RESULTS / entry["table_file"]
    from dass_edge.errors import DassEdgeError
    from dass_edge.latency import load_table
    from dass_edge.models.checkpoint import load_checkpoint

    teacher, _ = load_checkpoint(TEACHERS.parents[1] / entry["teacher"])
    try:
        here = load_table("cpu", teacher.spec.resolution, teacher.spec).path
    except DassEdgeError:
        here = None
    if here is None or here.name != entry["table"]:
        raise SystemExit(f"error: {PLAN.name} set {task}'s budgets with {entry['table']} and stores no copy of "
                         f"it; this machine has {here.name if here else 'no table for that teacher'}: picks made "
                         "here would not be comparable (start a new plan with --plan NAME)")
    return here


def _save_pick(task: str, budget: int, method: str, pick: dict) -> None:
    """Add one pick to the plan file as it is now (a killed run keeps what it found; ``picks`` runs for other
    methods may be adding theirs at the same time, so read-modify-write under a lock, never a stale copy)."""
    import fcntl

    with open(PLAN.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = json.loads(PLAN.read_text())
        data["tasks"][task]["budgets"][budget]["picks"][method] = pick
        atomic_write_json(PLAN, data)


def _done() -> dict[tuple[str, str, int], dict]:
    if not ROWS.is_file():
        return {}
    rows = [json.loads(line) for line in ROWS.read_text().splitlines() if line.strip()]
    return {(r["task"], r["arch_key"], int(r.get("seed", 0))): r for r in rows}


def _jobs(device: str, seeds: tuple[int, ...] = (0,)) -> list[dict]:
    from dass_edge.data.builtin import cache_dir
    from dass_edge.training.distill import KDConfig

    data = json.loads(PLAN.read_text())
    config = KDConfig().to_dict()  # the meta-database recipe (10 epochs, lr 0.01, alpha 0.5, T 6)
    jobs, seen = [], set()
    root = TEACHERS.parents[1]
    for seed in seeds:
        for task, entry, b in _settings(data):
            # Picks first (they decide the table), then the random students (seed 0 only: the median of
            # random students is a reference, the picks are the comparison).
            for arch in [*(p["arch"] for p in b["picks"].values()), *(b["random"] if seed == 0 else [])]:
                key = (task, Arch.from_dict(arch).key(), seed)
                if key in seen:
                    continue
                seen.add(key)
                jobs.append({"task": task, "heldout": True, "resolution": entry.get("resolution", 16),
                             "teacher_path": str(root / entry["teacher"]),
                             "teacher_sha256": entry["teacher_sha256"], "arch": arch, "seed": seed, "config": config,
                             "threads": 1, "cache_dir": str(cache_dir()), "device": device, "engine": "local"})
    return jobs


def _shard(job: dict, shards: int) -> int:
    """Which of ``--shard K/N``'s N processes trains ``job`` (stable across runs and processes)."""
    import hashlib

    key = f"{job['task']}|{Arch.from_dict(job['arch']).key()}|{job['seed']}".encode()
    return int(hashlib.sha256(key).hexdigest(), 16) % shards


def train(args: argparse.Namespace) -> None:
    """Train what is missing, re-reading the plan after every student: picks that a parallel ``picks``
    run adds are trained as they come, in :func:`_settings` order (picks before random students)."""
    from dass_edge.metadb.engines import LocalEngine
    from dass_edge.metadb.jobs import kd_job

    failed: set[tuple[str, str]] = set()
    while True:
        done = _done()
        skip = set(done) | failed
        todo = [j for j in _jobs(args.train_device, args.seeds)
                if (j["task"], Arch.from_dict(j["arch"]).key(), j["seed"]) not in skip
                and _shard(j, args.shard[1]) == args.shard[0]]
        if not todo:
            return
        print(f"{len(todo)} students to train", flush=True)
        with LocalEngine(args.workers) as engine:
            for job, row, err in engine.run(kd_job, todo[: max(args.workers, 1)]):
                if err is not None:
                    failed.add((job["task"], Arch.from_dict(job["arch"]).key(), job["seed"]))
                    print("failed", job["task"], Arch.from_dict(job["arch"]).key(), err, flush=True)
                    continue
                slim = {k: row[k] for k in ("task", "arch_key", "arch", "seed", "val_acc", "test_acc", "seconds",
                                            "device", "params", "flops")}
                with ROWS.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(slim) + "\n")
                print(row["task"], row["arch_key"], row["test_acc"], row["seconds"], flush=True)


def _tables_text(data: dict) -> str:
    """Which machines' tables the plan's budgets come from (the CPU part of the tables' names)."""
    machines = sorted({(e.get("table") or "an unrecorded machine").split("_onnxruntime")[0].removeprefix("cpu_")
                       for e in data["tasks"].values()})
    return "measured on " + ", ".join(machines)


def _refit_legend(n: int, tasks: int, shipped: str) -> dict[str, str]:
    """Legend of an earlier shipped fit's two columns (``dass_setN``, ``dass_setN+refine``)."""
    return {f"dass_set{n}": f"the predictor fitted on set {n} ({tasks} meta-training tasks; shipped in {shipped}), "
                            "zero-shot",
            f"dass_set{n}+refine": f"the set-{n} predictor with the shipped refinement"}


#: Methods the report's figure shows, with their marker and colour (the older fits' columns would crowd it; the
#: table has them).
PLOT_STYLE = {SHIPPED: ("D", "tab:red"), "dass": ("o", "tab:orange"), "flops": ("s", "tab:blue"),
              "synflow": ("^", "tab:green"), "ridge": ("v", "tab:purple"), "diswot": ("<", "tab:brown"),
              "flops+refine": ("P", "tab:gray")}


def plot_margins(path: Path, settings: list[tuple[str, dict[str, float]]]) -> Path:
    """One row per setting, one marker per method: its pick's accuracy minus the median random student's
    (points). The table says the same in numbers; the figure shows at a glance where the shipped search sits
    among the proxies, setting by setting. Drawn on a bare Agg ``Figure``, written atomically.

    Raises:
        ValueError: no settings, or a setting without the shipped search's margin.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not settings:
        raise ValueError("nothing to plot: no complete setting")
    missing = [label for label, m in settings if SHIPPED not in m]
    if missing:
        raise ValueError(f"settings without the shipped search's margin: {', '.join(missing)}")
    fig = Figure(figsize=(9.0, 1.2 + 0.5 * len(settings)), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    values = [v for _, m in settings for v in m.values()]
    left = min(max(min(values), -15.0), 0.0) - 1.0  # a collapsed pick (DisWOT: -40) would squash every other point
    rows = range(len(settings))[::-1]  # first setting on top
    for k, (method, (marker, colour)) in enumerate(PLOT_STYLE.items()):
        offset = 0.3 - 0.6 * k / (len(PLOT_STYLE) - 1)  # each method its own line within the setting's row
        pts = [(m[method], row + offset) for (_, m), row in zip(settings, rows) if method in m]
        if not pts:
            continue
        ax.scatter([max(x, left) for x, _ in pts], [y for _, y in pts], marker=marker, color=colour, label=method,
                   s=60 if method == SHIPPED else 28, edgecolors="black" if method == SHIPPED else "none",
                   zorder=3 if method == SHIPPED else 2)
        for x, y in pts:
            if x < left:
                ax.annotate(f"{x:.0f}", (left, y), xytext=(4, -3), textcoords="offset points", fontsize=7)
    ax.axvline(0.0, color="grey", lw=0.8)
    ax.set_xlim(left=left - 0.5)
    ax.set_yticks(list(rows), [label for label, _ in settings])
    for row in rows[:-1]:
        ax.axhline(row - 0.5, color="lightgrey", lw=0.5)
    ax.set_xlabel("pick's test accuracy minus the median random student's (points)"
                  + (f"; points left of {left:.0f} drawn at the edge" if min(values) < left else ""))
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))


def _one_on_one(by_task: dict[str, list[dict[str, float | None]]], methods: list[str]) -> str:
    """The shipped search against each method alone (the best-of-four above is an oracle no user has): mean
    difference over complete settings, and a 95% interval resampling tasks (a task's budgets share its teacher
    and data, so they are averaged first rather than counted as independent)."""
    from benchmarks.common import task_bootstrap

    parts = []
    for m in methods:
        complete = [gots for gots in by_task.values() if all(g.get(m) is not None for g in gots)]
        if len(complete) < 2:
            continue
        per_task = [statistics.mean(g[SHIPPED] - g[m] for g in gots) for gots in complete]
        diffs = [g[SHIPPED] - g[m] for gots in complete for g in gots]
        lo, hi = task_bootstrap(per_task)
        parts.append(f"{m} {statistics.mean(diffs):+.2f} [{lo:+.2f}, {hi:+.2f}] (ahead in "
                     f"{sum(d > 0 for d in diffs)} of {len(diffs)}, level in {sum(d == 0 for d in diffs)})")
    if not parts:
        return ""
    return ("\nThe shipped search minus each method alone, points (mean over settings; 95% interval resampling "
            "the tasks where the method picked at every budget, a task's budgets averaged): " + "; ".join(parts)
            + ".\n")


def report(_: argparse.Namespace) -> None:
    data = json.loads(PLAN.read_text())
    done = _done()

    seeds = sorted({k[2] for k in done})

    def acc(task: str, arch: dict, pick: bool = True) -> float | None:
        """Test accuracy, the mean over the seeds trained (picks need every seed; random students seed 0)."""
        key = Arch.from_dict(arch).key()
        got = [done[(task, key, s)]["test_acc"] for s in (seeds if pick else [0]) if (task, key, s) in done]
        return statistics.mean(got) if got and (not pick or len(got) == len(seeds)) else None

    # Other predictor files picked with (--predictor-file NAME=PATH): shown beside DaSS, not counted as proxies.
    extra = sorted({m for e in data["tasks"].values() for b in e["budgets"] for m in b["picks"]} - set(METHODS))
    head = " | ".join([*METHODS, *extra])
    lines = ["### Top pick of each predictor, KD-trained (test accuracy %)", "",
             f"| task | budget ms | {head} | median of {N_RANDOM} random | shipped search - best proxy | shipped "
             "search - median random | seed gap |", "|---|---|" + "---|" * (len(METHODS) + len(extra) + 4)]
    margins, plotted, by_task = [], [], {}
    for task, entry in data["tasks"].items():
        for b in entry["budgets"]:
            got = {m: acc(task, b["picks"][m]["arch"]) if m in b["picks"] else None for m in [*METHODS, *extra]}
            rand = [a for a in (acc(task, x, pick=False) for x in b["random"]) if a is not None]
            cells = [f"{got[m]:.2f}" if got[m] is not None else "-" for m in [*METHODS, *extra]]
            proxies = [got[m] for m in PROXIES if got[m] is not None]
            if got[SHIPPED] is None or len(proxies) < len(PROXIES) or len(rand) < N_RANDOM:
                partial = f"{statistics.median(rand):.2f} ({len(rand)}/{N_RANDOM} trained)" if rand else "-"
                lines.append(f"| {task} | {b['budget_ms']:.3f} | {' | '.join(cells)} | {partial} | incomplete | | "
                             f"{entry['seed_gap']} |")
                continue
            med = statistics.median(rand)
            vs_proxy, vs_rand = got[SHIPPED] - max(proxies), got[SHIPPED] - med
            others = [m for m in [*METHODS, *extra] if m != SHIPPED and m not in PROXIES]
            margins.append((vs_proxy, vs_rand, {m: got[m] - med for m in [*METHODS, *extra] if got[m] is not None},
                            {m: got[m] - max(proxies) for m in others if got[m] is not None},
                            float(entry["seed_gap"])))
            by_task.setdefault(task, []).append(got)
            plotted.append((f"{task} {b['budget_ms']:.3f} ms",
                            {m: v for m, v in margins[-1][2].items() if m in PLOT_STYLE}))
            lines.append(f"| {task} | {b['budget_ms']:.3f} | {' | '.join(cells)} | {med:.2f} | {vs_proxy:+.2f} | "
                         f"{vs_rand:+.2f} | {entry['seed_gap']} |")
    body = "\n".join(lines) + "\n"
    settings = sum(len(e["budgets"]) for e in data["tasks"].values())
    if len(margins) < settings:
        body += (f"\n{len(margins)} of {settings} settings complete: this run was cut short (KD on a shared 2-core "
                 f"CPU, ~5 min per student); {len(done)} students trained so far. Rerun the command to finish it: "
                 "every stage resumes where it stopped.\n")
    if margins:
        mean_over = {m: statistics.mean(x[2][m] for x in margins if m in x[2])
                     for m in [*METHODS, *extra] if any(m in x[2] for x in margins)}
        body += (f"\nOver {len(margins)} complete settings: the shipped search ({SHIPPED}) minus the best proxy "
                 f"pick, mean {statistics.mean(x[0] for x in margins):+.2f} points (ahead in "
                 f"{sum(x[0] > 0 for x in margins)}, level in {sum(x[0] == 0 for x in margins)}, behind by more "
                 f"than the task's seed gap in {sum(x[0] < -x[4] for x in margins)}); mean margin over "
                 "the median random student: " + ", ".join(f"{m} {v:+.2f}" for m, v in mean_over.items()) + ".\n")
        for m in [m for m in [*METHODS, *extra] if m != SHIPPED and m not in PROXIES]:  # against the same proxies
            got_m = [x[3][m] for x in margins if m in x[3]]
            if got_m:
                body += (f"{m} minus the best zero-shot proxy pick: mean {statistics.mean(got_m):+.2f} points over "
                         f"{len(got_m)} settings (ahead in {sum(v > 0 for v in got_m)}, level in "
                         f"{sum(v == 0 for v in got_m)}).\n")
    body += _one_on_one(by_task, [m for m in [*METHODS, *extra] if m != SHIPPED])
    legend = {"dass+refine": "the shipped search (`dass-edge search` defaults): the predictor's pick refined by short "
                             "KD of 4 finalists (2 depth patterns by the predictor, 2 by FLOPs; 3 of 10 epochs each)",
              "dass": "the predictor alone, zero-shot (`--refine 0`)",
              "flops+refine": "FLOPs' 4 best depth patterns as finalists, refined the same way",
              **_refit_legend(5, 16, "sessions 10-11"),
              "dass_set5+refine4": "the set-5 predictor's 4 best depth patterns as finalists (session 11's first "
                                   "rule)",
              "dass_set3": "the predictor fitted on set 3 (shipped before session 10's refit)",
              **_refit_legend(7, 18, "sessions 12-16"), **_refit_legend(9, 22, "session 17"),
              **_refit_legend(10, 24, "session 18"), **_refit_legend(11, 26, "session 19"),
              **_refit_legend(12, 28, "session 20"), **_refit_legend(13, 30, "session 21"),
              **_refit_legend(14, 32, "sessions 23-25"), **_refit_legend(15, 34, "sessions 26-27")}
    known = [m for m in [*METHODS, *extra] if m in legend]
    if known:
        body += "\nColumns beside the proxies: " + "; ".join(f"`{m}`: {legend[m]}" for m in known) + ".\n"
    devices = sorted({r.get("device", "cpu") for r in done.values()})
    evals = sorted({p["evaluated"] for e in data["tasks"].values() for b in e["budgets"] for p in b["picks"].values()})
    evals_text = f"{evals[0]}-{evals[-1]}" if evals else "?"
    body += (f"\nEvery search: `dass-edge search --predictor KEY` as a library call (evolution, seed 0, "
             f"{evals_text} students scored, top-1), the CPU latency table the plan was made with for the "
             f"teacher ({_tables_text(data)}), budgets at 35% and 65% of the way from the fastest student to the "
             f"teacher. Students trained with the meta-database recipe (10 epochs, lr 0.01, KD alpha 0.5, T 6) "
             f"on {', '.join(devices)}: "
             f"picks with seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))} (their mean), the random "
             "students with seed 0; "
             "test accuracy of the best-on-validation epoch. The seed gap is the mean |seed 0 - seed 1| validation "
             "accuracy of the database's students of that task: single-seed differences smaller than about twice it "
             "are not evidence either way.\n")
    from dass_edge.search.algorithms import DEFAULT_BUDGET_EVALS

    if _plan_evals(data) < DEFAULT_BUDGET_EVALS:
        body += (f"\n**Searches short of the product's.** This plan's searches scored {_plan_evals(data)} students; "
                 f"`dass-edge search` scores {DEFAULT_BUDGET_EVALS}. At {_plan_evals(data)} most picks are not their "
                 "own objective's optimum (session 25, on v3's settings: the set-14 predictor's pick in 13 of 14, "
                 "1.7 points of predicted accuracy below it on average; FLOPs' with 6.9% fewer FLOPs than the most "
                 "any search found under the budget; `BENCHMARKS.md`, search effort), so these columns compare "
                 "under-converged searches. Head-to-head v4 (`head_to_head_plan_v4.json`) repeats the settings at the "
                 "default.\n")
    name = "head_to_head" + PLAN.stem.removeprefix("head_to_head_plan")
    if plotted:
        figure = plot_margins(RESULTS / f"{name}.png", plotted)
        body += (f"\n![Each method's pick against the median random student, setting by setting]"
                 f"({figure.relative_to(RESULTS.parents[1]).as_posix()})\n")
    plan_arg = "" if PLAN.name == DEFAULT_PLAN else f" --plan {PLAN.name}"
    write_fragment(name, "Head-to-head: the same search with DaSS and with proxies" + (
        f" ({PLAN.stem.removeprefix('head_to_head_plan_')})" if name != "head_to_head" else ""),
                   f"python benchmarks/bench_head_to_head.py{plan_arg} (plan, picks --evals {_plan_evals(data)}, "
                   "train, report)", body)
    print(body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", nargs="?", default="all", choices=["all", "plan", "picks", "train", "report"])
    parser.add_argument("--plan", default=DEFAULT_PLAN, metavar="NAME",
                        help="plan file under benchmarks/results/ (a new name starts a new plan with this "
                             "machine's tables; its report goes to head_to_head_SUFFIX.md)")
    parser.add_argument("--train-device", "--device", dest="train_device", default="cpu",
                        help="torch accelerator of the train stage: cpu or cuda[:N] (--device: its old spelling)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seeds", default="0",
                        help="train stage: KD seeds of the picks, e.g. 0,1 (random students: seed 0)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--db", action="append", metavar="DB",
                        help="plan stage: take held-out tasks from these databases (repeatable; 'shipped' is the "
                             "shipped one, the default), e.g. --db shipped --db metadb/metadb_v2.jsonl")
    parser.add_argument("--evals", type=int, default=None,
                        help="plan stage: students each search of a new plan scores (default: the search's "
                             "default); picks: must match the plan's")
    parser.add_argument("--from", dest="source", default=None, metavar="NAME",
                        help="plan stage: start the plan from another plan's settings (budgets, random students, "
                             "tables), no picks")
    parser.add_argument("--methods", default=",".join(METHODS), help="predictors to pick with")
    parser.add_argument("--predictor-file", action="append", default=[], metavar="NAME=PATH",
                        help="also pick with this predictor file, reported as column NAME (e.g. an earlier predictor)")
    parser.add_argument("--shard", default="0/1", help="K/N: train only share K (0 to N-1) of N shares of the "
                                                       "students (run N train processes side by side)")
    args = parser.parse_args()
    global PLAN
    if Path(args.plan).name != args.plan or not args.plan.startswith("head_to_head_plan") or \
            not args.plan.endswith(".json"):
        raise SystemExit(f"error: --plan takes a file name head_to_head_plan*.json under {RESULTS}, got {args.plan!r}")
    PLAN = RESULTS / args.plan
    k, _, n = args.shard.partition("/")
    n = n or "1"
    if not (k.isdigit() and n.isdigit() and int(k) < int(n)):
        # a share that matches no student would train nothing and say nothing (K counts from 0)
        parser.error(f"--shard takes K/N with 0 <= K < N (shares count from 0), got {args.shard!r}")
    args.shard = (int(k), int(n))
    args.seeds = tuple(int(x) for x in args.seeds.split(",") if x.strip())
    torch.set_num_threads(1)
    stages = {"plan": plan, "picks": picks, "train": train, "report": report}
    if args.stage != "all":
        stages[args.stage](args)
        return
    for name in (["plan"] if not PLAN.is_file() or args.db else []) + ["picks", "train", "report"]:
        stages[name](args)


if __name__ == "__main__":
    main()

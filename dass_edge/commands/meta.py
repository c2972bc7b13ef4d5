"""``dass-edge meta``: the meta-training database (``build-db``, ``info``) and the DaSS predictor
learned from it (``train``, ``eval``)."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich import box
from rich.table import Table

from dass_edge.commands._common import (
    console,
    err_console,
    finite_option,
    old_device_option,
    pick_train_device,
    print_json,
    progress_bar,
)
from dass_edge.errors import DassEdgeError
from dass_edge.validate import check_output_dir, check_output_file

if TYPE_CHECKING:
    from dass_edge.metadb.sources import CombinedDB

__all__ = ["app", "parse_tasks", "SHIPPED_DB"]

app = typer.Typer(help="The meta-training database: KD-trained students per (task, teacher).", no_args_is_help=True)
SHIPPED_DB = "metadb.jsonl"  # in dass_edge/assets


def parse_tasks(text: str, default_model: str) -> list[tuple[str, str, int | None]]:
    """``name[:model][@resolution],...`` → ``[(name, model, resolution or None), ...]``."""
    out = []
    for item in text.replace(" ", "").split(","):
        if not item:
            continue
        item, _, res = item.partition("@")
        name, _, model = item.partition(":")
        if res and not res.isdigit():
            raise DassEdgeError(f"--tasks: {res!r} after '@' in {item}@{res} is not a resolution in pixels")
        out.append((name, model or default_model, int(res) if res else None))
    if not out:
        raise DassEdgeError("--tasks is empty; give built-in task names (see 'dass-edge data list')")
    return out


def _ints(text: str, what: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise DassEdgeError(f"{what} must be comma-separated integers (got {text!r})") from None


def _logger(log_file: Path | None, progress, task_id):
    fh = open(log_file, "a", encoding="utf-8") if log_file else None  # noqa: SIM115 - closed by the caller
    started = time.time()
    state = {"done": 0, "todo": 0}

    def log(event: str, info: dict) -> None:
        if event == "start":
            nonlocal started
            started = time.time()  # ETA from KD runs only, not teacher training
            state["todo"] = info["todo"]
            progress.update(task_id, total=info["todo"], completed=0, status=f"{info['done']} done before")
        elif event == "row":
            state["done"] += 1
            progress.update(task_id, advance=1, status=f"{info['task']} {info['val_acc']:.1f}%")
        elif event in ("teachers", "teacher_done"):
            progress.update(task_id, status=f"teachers: {info.get('task', info.get('total'))}")
        if fh is None:
            return
        rec = {"t": time.strftime("%Y-%m-%dT%H:%M:%S"), "event": event}
        if event == "row":
            elapsed = time.time() - started
            left = state["todo"] - state["done"]
            rec.update(task=info["task"], arch=info["arch_key"], seed=info["seed"], val_acc=info["val_acc"],
                       seconds=info["seconds"], done=state["done"], left=left,
                       eta_hours=round(elapsed / state["done"] * left / 3600, 2))
        else:
            rec.update(info)
        fh.write(json.dumps(rec, default=str) + "\n")
        fh.flush()

    return log, fh


@app.command("build-db")
def build_db_cmd(
    tasks: str = typer.Option(..., "--tasks", help="Built-in tasks, comma-separated; name:model picks its teacher."),
    students_per_task: int = typer.Option(40, "--students-per-task", help="Students per task (--sampling even; bands "
                                          "take --bands x --per-band)."),
    seeds: str = typer.Option("0", "--seeds", help="KD seeds, comma-separated."),
    multi_seed_students: int = typer.Option(None, "--multi-seed-students",
                                            help="Only the first N students of a task get every seed (others: the "
                                                 "first seed)."),
    epochs: int = typer.Option(10, "--epochs", help="KD epochs per student."),
    lr: float = typer.Option(0.01, "--lr", help="KD peak learning rate.", callback=finite_option),
    resolution: int = typer.Option(16, "--resolution", help="Input resolution of tasks and teachers."),
    teacher_model: str = typer.Option("resnet_edge_s", "--teacher-model", help="Teacher shape for tasks without one."),
    sampling: str = typer.Option("even", "--sampling", help="even (spread in log-params) or bands (groups of "
                                                           "near-equal FLOPs, shapes as different as possible)."),
    bands: int = typer.Option(8, "--bands", help="With --sampling bands: FLOPs bands per task."),
    per_band: int = typer.Option(8, "--per-band", help="With --sampling bands: students per band."),
    band_tol: float = typer.Option(0.05, "--band-tol", help="With --sampling bands: relative FLOPs tolerance."),
    teacher_epochs: int = typer.Option(60, "--teacher-epochs", help="Teacher training epochs (to convergence)."),
    teacher: Path = typer.Option(None, "--teacher", help="Use this teacher (only with a single task)."),
    teachers_dir: Path = typer.Option(None, "--teachers", help="Teacher folder (<task>.safetensors); default: "
                                                               "'teachers' next to the database."),
    heldout: str = typer.Option("", "--heldout", help="Tasks to mark as held out for meta-test."),
    engine: str = typer.Option("local", "--engine", help="local (process pool) or ray."),
    address: str = typer.Option(None, "--address", help="Ray cluster address (default: start a local one)."),
    workers: int = typer.Option(1, "--workers", help="Parallel jobs (0: run in this process)."),
    threads: int = typer.Option(1, "--threads", help="Torch threads per job (fixed, for reproducible rows)."),
    train_device: str = typer.Option(None, "--train-device", help="Train on cpu or cuda[:N] (default: cpu; all "
                                                                   "workers share the GPU)."),
    old_device: str = old_device_option(),
    sample_seed: int = typer.Option(0, "--sample-seed", help="Seed of the student sampling."),
    out: Path = typer.Option(Path("metadb/metadb.jsonl"), "--out", help="Database (JSONL; appended to)."),
    log_file: Path = typer.Option(None, "--log", help="Append a JSON line per event to this file."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Build or continue a meta-database: a teacher per task, then KD runs of seeded students."""
    from dataclasses import replace

    from dass_edge.metadb.builder import TEACHER_RECIPE, BuildPlan, TaskPlan, build_db, validate_plan
    from dass_edge.metadb.engines import make_engine
    from dass_edge.training.distill import DB_RECIPE, KDConfig

    device = pick_train_device(train_device, old_device)
    pairs = parse_tasks(tasks, teacher_model)
    held = {t for t in heldout.replace(" ", "").split(",") if t}
    unknown_held = held - {n for n, _, _ in pairs}
    if unknown_held:
        raise DassEdgeError(f"--heldout names tasks not in --tasks: {', '.join(sorted(unknown_held))}")
    if teacher is not None and len(pairs) != 1:
        raise DassEdgeError("--teacher works with a single task; put teachers in --teachers DIR as <task>.safetensors")
    seed_list = _ints(seeds, "--seeds")
    plan = BuildPlan(
        tasks=[TaskPlan(n, m, n in held, students_per_task, seed_list, multi_seed_students, r, sampling, bands,
                        per_band, band_tol) for n, m, r in pairs],
        teachers_dir=teachers_dir or out.parent / "teachers", resolution=resolution,
        config=KDConfig(recipe=replace(DB_RECIPE, epochs=epochs, lr=lr)),
        teacher_recipe=replace(TEACHER_RECIPE, epochs=teacher_epochs), sample_seed=sample_seed, threads=threads,
        device=device,
        teacher_paths={pairs[0][0]: teacher} if teacher is not None else {},
    )
    validate_plan(plan, out)  # bad input fails here: no engine started, nothing written
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
    with make_engine(engine, workers, address, threads) as eng, progress_bar() as progress:
        task_id = progress.add_task("build-db", total=None, status="checking input")
        log, fh = _logger(log_file, progress, task_id)
        try:
            summary = build_db(plan, out, eng, log)
        finally:
            if fh:
                fh.close()
    summary["out"] = str(out)
    if json_out:
        print_json(summary)
    else:
        console.print(f"{out}: {summary['added']} rows added ({summary['done_before']} of {summary['planned']} "
                      f"planned runs were already there), {summary['rows']} rows in all")
    if summary["failed"]:
        err_console.print(f"{summary['failed']} runs failed; rerun the same command to retry them")
        raise typer.Exit(1)


@app.command("freeze")
def freeze_cmd(
    tasks: str = typer.Argument(..., help="Built-in tasks to freeze, comma-separated."),
    folder: Path = typer.Option(Path("metadb/tasks"), "--dir", help="Frozen-task folder (with its SHA256SUMS)."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Store built-in tasks' images once (uint8 .npz + sha256), so every machine builds on the same pixels."""
    from dass_edge.data.builtin import builtin_tasks
    from dass_edge.data.frozen import freeze_task, frozen_file, read_manifest

    names = [t for t in tasks.replace(" ", "").split(",") if t]
    unknown = [t for t in names if t not in builtin_tasks()]
    if not names or unknown:
        raise DassEdgeError(f"unknown task(s) {', '.join(unknown) or '(none given)'}; see 'dass-edge data list'")
    done = []
    for name in names:
        if frozen_file(name) in read_manifest(folder):  # frozen means frozen: rerunning skips it
            if not json_out:
                console.print(f"{folder / frozen_file(name)} is already frozen")
            continue
        fname, sha = freeze_task(name, folder)
        done.append({"task": name, "file": str(folder / fname), "sha256": sha})
        if not json_out:
            console.print(f"wrote {folder / fname} (sha256 {sha[:12]}...)")
    if json_out:
        print_json(done)


@app.command("info")
def info_cmd(
    db: list[Path] = typer.Argument(None, help="Databases, read as one (default: the one shipped with dass-edge; "
                                               "'shipped' names it among others)."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """What a meta-database holds: tasks, students, held-out tasks, label noise (seed Spearman), spread."""
    from dass_edge.metadb import db_info, scan_rows
    from dass_edge.metadb.sources import resolve_db_paths

    paths = resolve_db_paths(db)
    rows, skipped = [], 0
    for p in paths:
        if not p.is_file():
            raise DassEdgeError(f"no database at {p}" + ("" if db else "; this installation ships none"))
        more, n = scan_rows(p)
        rows, skipped = rows + more, skipped + n
    path = " + ".join(map(str, paths))
    info = db_info(rows)
    info["path"], info["skipped_lines"] = str(path), skipped
    info["predictor"] = _shipped_predictor_info()
    if json_out:
        print_json(info)
        return
    if skipped:
        err_console.print(f"note: skipped {skipped} corrupt lines of {path}", markup=False, highlight=False,
                          soft_wrap=True)
    console.print(f"{path}: {info['rows']} rows, {info['tasks']} tasks, >= {info['students_per_task']} students per "
                  f"task, held out: {', '.join(info['heldout_tasks']) or 'none'}")
    console.print(f"seed Spearman {info['seed_spearman']}, gap/spread {info['seed_gap_over_spread']}, "
                  f"median accuracy spread {info['acc_spread']} points, {info['train_hours']} job-hours of KD "
                  f"({', '.join(f'{n} rows on {d}' for d, n in info['rows_by_device'].items())})")
    rows = []
    for t in info["per_task"]:
        agree, band = t["seed_agreement"], t["within_band"] or {}
        rows.append([t["task"] + (" *" if t["heldout"] else ""), str(t["teacher_model"]),
                     f"{t['stem']}@{t['resolution']}", _fmt(t["teacher_val_acc"], ".1f"),
                     t["sampling"] + (f" ({band['bands']})" if band else ""), str(t["students"]), str(t["rows"]),
                     f"{t['min_acc']:.1f}..{t['max_acc']:.1f}", _fmt(agree["spearman"]) if agree else "-",
                     _fmt(band.get("seed_spearman")), _fmt(band.get("gap_over_spread")),
                     _fmt(band.get("flops_spearman"))])
    # Cells never shrink below their content (a truncated task name is useless): short headers, a legend.
    headers = ("task", "teacher", "stem@px", "val", "sampling", "n", "rows", "acc range", "seed ρ", "band ρ", "gap",
               "FLOPs ρ")
    legend = ("val: the teacher's val accuracy; n: students; seed ρ: seed-to-seed Spearman; band ρ, gap: the same and "
              "the seed gap over the spread inside equal-FLOPs bands; FLOPs ρ: FLOPs' Spearman inside them")
    held = any(t["heldout"] for t in info["per_task"])
    table = _compact_table(headers, rows, caption=("* held out; " if held else "") + legend)
    console.print(table)


def _shipped_predictor_info() -> dict | None:
    from dass_edge.predictor.store import default_predictor_path, read_predictor_meta

    path = default_predictor_path()
    if not path.is_file():
        return None
    meta = read_predictor_meta(path)
    mean = (meta.get("heldout") or {}).get("mean", {})
    return {"path": str(path), "kind": meta.get("model", {}).get("kind", "dass"), "trained_at": meta.get("trained_at"),
            "members": meta.get("members"),
            "db_rows": meta.get("db", {}).get("rows"), "train_tasks": meta.get("db", {}).get("train_tasks"),
            "heldout_spearman": mean.get("dass", {}).get("spearman"),
            "heldout_spearman_ceiling": mean.get("ceiling", {}).get("spearman")}


_DB_HELP = ("Meta-database; repeat to read several as one (--db shipped --db metadb/metadb_v2.jsonl: 'shipped' "
            "names the installed one, the default).")


def _dbs_and_teachers(dbs: list[Path] | None, teachers: Path | None) -> tuple[CombinedDB, Path]:
    """The databases read as one, and the one teacher folder that holds all their teachers."""
    from dass_edge.metadb.sources import combine_dbs, resolve_db_paths
    from dass_edge.predictor.pipeline import resolve_teachers_dir

    combined = combine_dbs(resolve_db_paths(dbs))
    found = {resolve_teachers_dir(p, teachers).resolve() for p in combined.paths}
    if len(found) > 1:
        raise DassEdgeError(f"the databases' teachers are in {' and '.join(map(str, sorted(found)))}; pass "
                            "--teachers DIR holding all of them")
    return combined, found.pop()


def _fmt(v, spec: str = ".3f") -> str:
    return "-" if v is None or (isinstance(v, float) and v != v) else format(v, spec)


def _interval(b: dict | None) -> str:
    """``+d [lo, hi]`` of a bootstrap difference; empty when there is none (too few students to resample)."""
    if not b or any(b.get(k) is None for k in ("diff", "lo", "hi")):
        return ""
    return f"{b['diff']:+.3f} [{b['lo']:+.3f}, {b['hi']:+.3f}]"


def _compact_table(headers: Sequence[str], rows: list[list[str]], title: str | None = None,
                   caption: str | None = None) -> Table:
    """A table whose cells never shrink below their content (truncated names cannot be told apart): a wide
    console shows it whole, a narrow one crops the right-hand columns, which ``--json`` has in full."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, collapse_padding=True, pad_edge=False, title=title,
                  caption=caption, caption_justify="left", title_justify="left")
    for i, h in enumerate(headers):
        table.add_column(h, min_width=max([len(h)] + [len(r[i]) for r in rows]), no_wrap=True)
    for r in rows:
        table.add_row(*r)
    return table


def _eval_table(report: dict) -> Table:
    """Per method, means over the held-out tasks: band Spearman, budgeted regret (FLOPs and, with tables,
    latency), full-range Spearman, top-1 regret, and the bootstrap interval of DaSS minus the method on band
    Spearman. Per task figures: the pairs table and ``--json``."""
    mean = report["mean"]
    latency = any("band_spearman_latency" in v for v in mean.values())
    headers = ["method", "band ρ", "regret", *(["band ρ lat.", "regret lat."] if latency else []), "full ρ",
               "top-1 regret", "DaSS - it, band ρ [95%]"]
    order = sorted(mean, key=lambda m: (m != "dass", m in ("ceiling", "seed_vs_seed"),
                                        -(mean[m].get("band_spearman") or 0.0)))
    boot = report.get("bootstrap", {})
    rows = []
    for m in order:
        row = mean[m]
        lat = [_fmt(row.get("band_spearman_latency")), _fmt((row.get("budget_regret_latency") or {}).get("mean"),
                                                            ".2f")] if latency else []
        rows.append([m, _fmt(row.get("band_spearman")), _fmt((row.get("budget_regret") or {}).get("mean"), ".2f"),
                     *lat, _fmt(row.get("spearman")), _fmt(row.get("regret"), ".2f"),
                     _interval(boot.get(m, {}).get("band_spearman"))])
    return _compact_table(headers, rows, title=f"Held-out tasks ({len(report['heldout_tasks'])}), means",
                          caption="band ρ: Spearman inside bands of 8 students of near-equal FLOPs; regret: points "
                                  "lost by the pick under budgets at the 20-80% FLOPs quantiles" +
                                  ("; lat.: the same with this machine's latency tables" if latency else "") +
                                  "; full ρ: over all students")


def _best_baseline(mean: dict) -> str | None:
    """The baseline with the highest band Spearman (DaSS, its variants and the ceilings aside)."""
    scored = {m: v.get("band_spearman") for m, v in mean.items()
              if not m.startswith("dass") and m not in ("ceiling", "seed_vs_seed")}
    scored = {m: v for m, v in scored.items() if v is not None and v == v}
    return max(scored, key=lambda m: scored[m]) if scored else None


def _pairs_table(report: dict) -> Table:
    """Per held-out pair: what it is, where its pixels came from, and DaSS against FLOPs and the best
    baseline inside bands (the full per-method figures are in ``--json``)."""
    rows = []
    for name in report["heldout_tasks"]:
        info, res = report["pairs"][name], report["tasks"][name]
        data = (report.get("task_data") or {}).get(name) or {}
        best = _best_baseline(res)
        flops = res.get("flops", {})
        sampled = (f"{_fmt(res['dass'].get('sampled_band_spearman'))}/{_fmt(flops.get('sampled_band_spearman'))}"
                   if "sampled_band_spearman" in res["dass"] else "-")
        rows.append([name, f"{info['stem']}@{info['resolution']} {'-'.join(map(str, info['teacher_depths']))}",
                     data.get("source", "-"), _fmt(res["dass"].get("band_spearman")), _fmt(flops.get("band_spearman")),
                     f"{best} {_fmt(res[best].get('band_spearman'))}" if best else "-",
                     _fmt(res.get("ceiling", {}).get("band_spearman")),
                     f"{_fmt(res['dass']['budget_regret']['mean'], '.2f')}/"
                     f"{_fmt(flops.get('budget_regret', {}).get('mean'), '.2f')}", sampled])
    return _compact_table(["pair", "teacher", "data", "DaSS", "FLOPs", "best baseline", "ceiling", "regret D/F",
                           "sampled D/F"], rows, title="Held-out pairs: band Spearman, budgeted regret (points)",
                          caption="D/F: DaSS/FLOPs; sampled: Spearman inside the bands a band-sampled build drew")


def _group_lines(report: dict) -> list[str]:
    """One line per group of held-out pairs (stem; database when several): DaSS against FLOPs and the best
    baseline on band Spearman (means over the group's pairs), with the bootstrap interval of each difference."""

    def interval(group: dict, method: str) -> str:
        b = (group["bootstrap"].get(method) or {}).get("band_spearman")
        text = _interval(b)
        return f" (DaSS - it {text})" if text else ""

    lines = []
    for name, g in report.get("groups", {}).items():
        mean, best = g["mean"], _best_baseline(g["mean"])
        parts = [f"DaSS {_fmt(mean['dass'].get('band_spearman'))}"]
        if "flops" in mean:
            parts.append(f"flops {_fmt(mean['flops'].get('band_spearman'))}{interval(g, 'flops')}")
        if best and best != "flops":
            parts.append(f"best baseline {best} {_fmt(mean[best].get('band_spearman'))}{interval(g, best)}")
        parts.append(f"ceiling {_fmt(mean.get('ceiling', {}).get('band_spearman'))}")
        lines.append(f"{name} ({', '.join(g['tasks'])}): band rho " + "; ".join(parts))
    return lines


@app.command("train")
def train_cmd(
    db: list[Path] = typer.Option(None, "--db", help=_DB_HELP),
    teachers: Path = typer.Option(None, "--teachers", help="The database's teacher folder (default: beside it, "
                                                           "or metadb/teachers of a source checkout)."),
    out: Path = typer.Option(Path("predictor.safetensors"), "--out", help="Where to write the predictor."),
    model: str = typer.Option("hybrid", "--model", help="'hybrid' (the shipped v2: size and shape features whose "
                                                        "weights follow the task's probe profile; closed form, one "
                                                        "member) or 'dass' (the Meta-SGD network ensemble)."),
    alpha: float = typer.Option(None, "--alpha", help="hybrid: ridge penalty (default: the shipped 100)."),
    probe: bool = typer.Option(True, "--probe/--no-probe", help="hybrid: let the task's probe profile modulate the "
                                                                "feature weights (--no-probe: an ablation)."),
    descriptors: str = typer.Option(None, "--descriptors", help="hybrid: teacher descriptors that modulate the "
                                    "weights too, comma-separated from stem, depth, width, classes, map, level (the "
                                    "teacher's stage-4 probe accuracy), colour (a colour-histogram probe's accuracy "
                                    "over chance), or 'none' (default: the shipped stem,map)."),
    single_blocks: bool = typer.Option(None, "--single-blocks/--no-single-blocks", help="hybrid: also fit a 0/1 "
                                       "term per stage for students with one block there (default: the shipped "
                                       "recipe's)."),
    members: int = typer.Option(3, "--members", help="dass: ensemble members (seeds seed..seed+members-1)."),
    steps: int = typer.Option(None, "--steps", help="Meta-training steps per member (default: the shipped "
                                                    "recipe's)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the first member."),
    no_adapt: bool = typer.Option(False, "--no-adapt", help="Train without teacher-guided adaptation (ablation)."),
    target: str = typer.Option("absolute", "--target", help="Regress accuracy ('absolute') or accuracy minus the "
                                                            "teacher's ('relative')."),
    adapt_scope: str = typer.Option("all", "--adapt-scope", help="Weights the adaptation moves: 'all' or 'head'."),
    use: str = typer.Option("arch,teacher", "--use", help="Inputs: student (embedding), arch, teacher; the "
                                                       "shipped recipe uses arch,teacher (see BENCHMARKS.md)."),
    json_out: bool = typer.Option(False, "--json", help="Print the held-out report as JSON."),
) -> None:
    """Meta-train the predictor on the database's meta-training tasks; report on its held-out tasks."""
    from dataclasses import replace

    from dass_edge.metadb.task_data import resolve_task_data
    from dass_edge.predictor.coverage import training_coverage
    from dass_edge.predictor.evaluation import evaluate_heldout
    from dass_edge.predictor.meta_tasks import load_meta_tasks
    from dass_edge.predictor.pipeline import HYBRID_DEFAULTS, fit_hybrid, predictor_metadata, train_ensemble
    from dass_edge.predictor.store import save_predictor
    from dass_edge.predictor.training import TrainConfig, fit_calibration

    inputs = tuple(u for u in use.replace(" ", "").split(",") if u)
    if not inputs or set(inputs) - {"student", "arch", "teacher"}:
        raise DassEdgeError(f"--use takes a comma-separated subset of student,arch,teacher (got {use!r})")
    check_output_file(out, "--out", suffix=".safetensors")
    if target not in ("absolute", "relative"):
        raise DassEdgeError(f"--target must be 'absolute' or 'relative' (got {target!r})")
    if adapt_scope not in ("all", "head"):
        raise DassEdgeError(f"--adapt-scope must be 'all' or 'head' (got {adapt_scope!r})")
    cfg = replace(TrainConfig(), seed=seed, adapt=not no_adapt, use=inputs, target=target, adapt_scope=adapt_scope,
                  **({"steps": steps} if steps else {}))
    if cfg.steps < 1:
        raise DassEdgeError(f"--steps must be >= 1, got {cfg.steps}")
    if members < 1:  # checked again by train_ensemble, but only after the database is embedded
        raise DassEdgeError(f"--members must be >= 1, got {members}")
    if model not in ("hybrid", "dass"):
        raise DassEdgeError(f"--model must be 'hybrid' or 'dass' (got {model!r})")
    if alpha is not None and not (alpha > 0 and math.isfinite(alpha)):
        raise DassEdgeError(f"--alpha must be a positive number, got {alpha}")
    hybrid = {**HYBRID_DEFAULTS, "probe": probe, **({"alpha": alpha} if alpha is not None else {})}
    if descriptors is not None:
        from dass_edge.predictor.hybrid import TEACHER_DESCRIPTORS

        names = () if descriptors.strip() == "none" else tuple(d for d in descriptors.replace(" ", "").split(",") if d)
        unknown = [d for d in names if d not in TEACHER_DESCRIPTORS]
        if unknown or not (names or descriptors.strip() == "none"):
            raise DassEdgeError(f"--descriptors takes a comma-separated subset of {', '.join(TEACHER_DESCRIPTORS)} "
                                f"or 'none' (got {descriptors!r})")
        hybrid["descriptors"] = names
    if single_blocks is not None:
        hybrid["single_blocks"] = single_blocks
    if model == "hybrid":  # the network's options would be silently ignored: say so instead
        network_only = [flag for flag, given in (("--steps", steps is not None), ("--no-adapt", no_adapt),
                                                 ("--target", target != "absolute"),
                                                 ("--adapt-scope", adapt_scope != "all"),
                                                 ("--use", use != "arch,teacher"), ("--members", members != 3))
                        if given]
        if network_only:
            raise DassEdgeError(f"{', '.join(network_only)} configure{'s' if len(network_only) == 1 else ''} the "
                                "DaSS network; add --model dass (the hybrid is closed form, one member)")
    elif alpha is not None or not probe or descriptors is not None or single_blocks is not None:
        raise DassEdgeError("--alpha, --no-probe, --descriptors and --single-blocks configure the hybrid; drop them "
                            "or use --model hybrid")
    combined, teachers_dir = _dbs_and_teachers(db, teachers)
    rows = combined.rows
    task_data = resolve_task_data(rows)
    t0 = time.time()
    with progress_bar() as progress:
        task_id = progress.add_task("embedding students", total=None, status=combined.provenance()["file"])
        # Only a network with the student input reads the students' embeddings (the slow part of loading).
        tasks = load_meta_tasks(rows, teachers_dir, embed_students=model == "dass" and "student" in inputs)

        def on(event: str, info: dict) -> None:
            if event == "member":
                progress.update(task_id, description=f"member {info['index'] + 1}/{info['total']}",
                                total=cfg.steps, completed=0)
            elif event == "step":
                progress.update(task_id, completed=info["step"], status=f"loss {info['loss']:.4f}")

        models = fit_hybrid(tasks, **hybrid) if model == "hybrid" else train_ensemble(tasks, cfg, members, on)
        calibration = fit_calibration(models, [t for t in tasks if not t.heldout])
        seconds = time.time() - t0
        progress.update(task_id, description="held-out evaluation", total=None, status="")
        report = evaluate_heldout(models, tasks, rows, teachers_dir, calibration=calibration,
                                  progress=lambda msg: progress.update(task_id, status=msg))
    meta = predictor_metadata(combined.paths[0], rows, tasks, {"model": "hybrid", **hybrid} if model == "hybrid"
                              else cfg, seconds, report, calibration)
    meta["db"].update(combined.provenance())
    meta["coverage"], meta["task_data"] = training_coverage(rows), task_data
    save_predictor(out, models, meta)
    if json_out:
        print_json({**report, "out": str(out)})
        return
    console.print(_eval_table(report))
    console.print(f"wrote {out} ({model}, {len(models)} member{'s' if len(models) > 1 else ''}, {seconds:.0f} s)")


@app.command("eval")
def eval_cmd(
    db: list[Path] = typer.Option(None, "--db", help=_DB_HELP),
    teachers: Path = typer.Option(None, "--teachers", help="The database's teacher folder."),
    predictor: Path = typer.Option(None, "--predictor", help="Predictor file (default: the shipped one)."),
    plots: Path = typer.Option(Path("runs/meta-eval"), "--plots", help="Folder for one predicted-vs-true PNG per "
                                                                       "held-out task."),
    k_shot: int = typer.Option(0, "--k-shot", help="Also report DaSS adapted on K KD-trained students per task."),
    table: list[Path] = typer.Option(None, "--table", help="Latency table (repeatable): tasks whose teacher's space "
                                                          "it covers also get latency bands and budgets."),
    baselines: str = typer.Option(None, "--baselines", help="Baselines to compare, comma-separated (default: all "
                                                            "registered)."),
    bootstrap: int = typer.Option(1000, "--bootstrap", help="Bootstrap replicates of DaSS minus each baseline "
                                                            "(0: none)."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Held-out evaluation: DaSS vs every registered baseline and the seed-noise ceiling, on the full range of
    students and inside bands of near-equal cost (the question a budgeted search asks)."""
    from dass_edge.latency.table import LatencyTable
    from dass_edge.metadb.task_data import resolve_task_data
    from dass_edge.predictor.baselines import is_baseline, list_baselines
    from dass_edge.predictor.evaluation import evaluate_heldout
    from dass_edge.predictor.meta_tasks import load_meta_tasks
    from dass_edge.predictor.store import load_predictor

    if k_shot < 0:
        raise DassEdgeError(f"--k-shot must be >= 0, got {k_shot}")
    if bootstrap < 0:
        raise DassEdgeError(f"--bootstrap must be >= 0, got {bootstrap}")
    names = tuple(b for b in (baselines or ",".join(list_baselines())).replace(" ", "").split(",") if b)
    unknown = [b for b in names if not is_baseline(b)]
    if unknown:
        raise DassEdgeError(f"unknown baseline {', '.join(unknown)}; known baselines: {', '.join(list_baselines())}")
    tables = [LatencyTable.load(p) for p in table or []]
    models, meta = load_predictor(predictor)
    if k_shot == 1 and meta["model"].get("kind") == "hybrid":
        raise DassEdgeError("--k-shot with the hybrid predictor needs 2 or more students (it fits their scale)")
    combined, teachers_dir = _dbs_and_teachers(db, teachers)
    rows = combined.rows
    trained_on = set(meta.get("db", {}).get("train_tasks", []))
    leaked = sorted(trained_on & {r["task"] for r in rows if r.get("heldout")})
    if leaked:
        raise DassEdgeError(f"the predictor was meta-trained on {', '.join(leaked)}, which this database holds "
                            "out; evaluate it on a database whose held-out tasks it never saw")
    task_data = resolve_task_data(rows)  # every frozen file checked before any work
    check_output_dir(plots, "--plots folder")  # made when the first plot is written
    groups = {f"db:{Path(s['path']).name}": s["tasks"] for s in combined.sources} if len(combined.sources) > 1 else {}
    fit = sorted(trained_on & {r["task"] for r in rows}) or None  # learned baselines see what DaSS saw
    with progress_bar(transient=True) as progress:
        task_id = progress.add_task("embedding students", total=None, status=combined.provenance()["file"])
        # Embeddings only for a network that reads them, or for a network's K-shot support set.
        hybrid = meta["model"].get("kind") == "hybrid"
        needs = any("student" in getattr(m, "use", ()) for m in models) or (k_shot > 0 and not hybrid)
        tasks = load_meta_tasks(rows, teachers_dir, embed_students=needs)
        report = evaluate_heldout(models, tasks, rows, teachers_dir, baselines=names, plots_dir=plots, k_shot=k_shot,
                                  calibration=meta.get("calibration"), tables=tables, bootstrap=bootstrap,
                                  groups=groups, fit_tasks=fit,
                                  progress=lambda msg: progress.update(task_id, description=msg))
    report["predictor"] = {"path": meta["path"], "trained_at": meta.get("trained_at"), "members": meta["members"]}
    report["databases"] = combined.sources
    report["task_data"] = {t: task_data[t] for t in report["heldout_tasks"]}
    if json_out:
        print_json(report)
        return
    console.print(_eval_table(report))
    console.print(_pairs_table(report))
    for line in _group_lines(report):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    console.print(f"plots: {', '.join(report['plots'])}")

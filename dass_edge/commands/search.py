"""``dass-edge search``: parse, prepare the search (every check first), build the scorer, search, print."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from dass_edge.commands._common import console, err_console, print_json, progress_bar, set_threads, threads_option
from dass_edge.search.algorithms import DEFAULT_BUDGET_EVALS
from dass_edge.search.refine import REFINE_EPOCHS, REFINE_FINALISTS

if TYPE_CHECKING:
    from dass_edge.search.plan import SearchPlan
    from dass_edge.search.run import Scorer

__all__ = ["search_command"]

_PHASES = {"export": "write models", "measure": "profile this CPU", "search": "search",
           "refine": "distill finalists (epochs)"}


def search_command(
    latency_ms: str = typer.Option(None, "--latency-ms", help="Latency budget (median on the device): ms (0.35) or "
                                   "a share of the teacher's latency there (50%), which fits any CPU."),
    speedup: float = typer.Option(None, "--speedup", help="Instead of --latency-ms: how many times faster than the "
                                  "teacher (2 = half its latency)."),
    device: str = typer.Option(None, "--device", help="Device profile with a measured table (see 'dass-edge "
                               "devices'); default: this machine's CPU, profiled first if it has no table."),
    teacher: Path = typer.Option(None, "--teacher", help="Teacher checkpoint (default: the shipped demo teacher)."),
    task: str = typer.Option(None, "--task", help="Built-in task (default: the teacher's own task)."),
    data: Path = typer.Option(None, "--data", help="Image folder: one sub-folder per class."),
    top_k: int = typer.Option(5, "--top-k", help="How many students to pick."),
    params_max: int = typer.Option(None, "--params-max", help="Keep only students with at most this many params."),
    algo: str = typer.Option("evolution", "--algo", help="evolution, random or exhaustive."),
    budget_evals: int = typer.Option(DEFAULT_BUDGET_EVALS, "--budget-evals", help="Distinct students to score."),
    seed: int = typer.Option(0, "--seed", help="Seed of the search."),
    out: Path = typer.Option(None, "--out", help="Run folder (default: runs/search-YYYYmmdd-HHMMSS)."),
    predictor: str = typer.Option(None, "--predictor", help="Accuracy predictor FILE (default: the shipped one), "
                                  "or a baseline key to search with instead (flops, synflow, ridge, diswot, ...; "
                                  "see 'dass-edge meta eval')."),
    replace: bool = typer.Option(False, "--replace", help="Replace --out if it holds an earlier search run."),
    resolution: int = typer.Option(None, "--resolution", help="Input side to search and profile at (default: the "
                                   "teacher's; a .pth teacher records none, so ImageNet-stem ones assume 224)."),
    support: list[Path] = typer.Option(None, "--support", help="Students of this task you already distilled "
                                       "(a 'dass-edge distill' output folder, or a search run folder with rank*/ "
                                       "distilled; repeat): the predictor adapts to their accuracy (K-shot)."),
    refine: int = typer.Option(REFINE_FINALISTS, "--refine", help="Distill N finalists (one per depth pattern: "
                               "half the predictor's best, half the largest by FLOPs) for --refine-epochs epochs on "
                               "this task and rank them by their accuracy then (0: the predictor alone, in seconds)."),
    refine_epochs: int = typer.Option(REFINE_EPOCHS, "--refine-epochs", help="Epochs of the 10-epoch KD recipe "
                                      "each finalist gets."),
    train_device: str = typer.Option(None, "--train-device", help="Where --refine distills: cpu or cuda[:N] "
                                     "(default: cpu)."),
    threads: int = threads_option(),
    json_out: bool = typer.Option(False, "--json", help="Print search.json instead of a table."),
) -> None:
    """Find the students most accurate after distillation that meet a latency budget; write runs/<id>/."""
    from dass_edge.search.budget import parse_budget

    budget = parse_budget(latency_ms, speedup)  # a bad budget fails before anything heavy is loaded
    set_threads(threads)
    from dass_edge.predictor.search_scorers import check_predictor
    from dass_edge.search.plan import prepare_search
    from dass_edge.search.run import run_search

    check_predictor(predictor, bool(support))
    from dass_edge.predictor.support import check_support, read_support

    students = read_support(support or [])  # unreadable folders fail before any profiling
    with contextlib.ExitStack() as stack:
        tasks: dict[str, int] = {}
        bars: list = []  # started by the first progress report, so early errors stay one clean line

        def progress(phase: str, done: int, total: int | None) -> None:
            if not bars:
                bars.append(stack.enter_context(progress_bar(transient=phase == "search")))
            if phase not in tasks:
                tasks[phase] = bars[0].add_task(_PHASES.get(phase, phase), total=total, status="")
            bars[0].update(tasks[phase], completed=done, total=total)

        plan = prepare_search(budget, device=device, teacher=teacher, task=task, data_dir=data, top_k=top_k,
                              params_max=params_max, algo=algo, budget_evals=budget_evals, seed=seed, out=out,
                              predictor=predictor, on_note=lambda msg: err_console.print(msg, markup=False),
                              profile_progress=progress, replace=replace, resolution=resolution,
                              refine=refine, refine_epochs=refine_epochs, train_device=train_device)
        if support:
            check_support(students, plan.teacher_sha256, plan.task, plan.data_dir)
        scorer = _load_scorer(plan, predictor, students)
        record = run_search(plan, scorer, progress=progress)
    if json_out:
        print_json(record)
        return
    _print(record)


def _load_scorer(plan: SearchPlan, predictor: str | None, support: list) -> Scorer:
    """The DaSS predictor adapted to the plan's teacher and task (and the support students), or the baseline
    named by ``predictor``."""
    from dass_edge.predictor.search_scorers import load_search_scorer

    with err_console.status("loading the accuracy predictor"):
        return load_search_scorer(predictor, plan.teacher, plan.data, teacher_meta=plan.teacher_meta, support=support)


def _print(record: dict) -> None:
    plain = {"soft_wrap": True, "markup": False, "highlight": False}
    table = Table(title=f"Best students under {record['budget']['text']} on {record['device']} "
                        f"({record['evaluated']:,} scored in {record['seconds']:.1f} s, {record['algo']})")
    refine = record.get("refine")
    short = [f"KD {refine['epochs']} ep %"] if refine else []
    for col in ("rank", "arch", "pred. acc %", *short, "p50 ms", "p90 ms", "params", "MFLOPs"):
        if col == "arch":
            table.add_column(col, overflow="fold")  # the key is what users copy: wrap it, never cut it
        else:
            table.add_column(col, justify="right", no_wrap=True)
    for p in record["top"]:
        early = [f"{p['refine_val_acc']:.1f}" if "refine_val_acc" in p else "-"] if refine else []
        table.add_row(str(p["rank"]), p["arch_key"], f"{p['predicted_acc']:.2f}", *early, f"{p['latency_ms']:.3f}",
                      f"{p['latency_p90_ms']:.3f}", f"{p['params'] / 1e6:.2f}M", f"{p['flops'] / 1e6:.1f}")
    t = record["teacher"]
    table.add_row("teacher", t["arch_key"], "-", *(["-"] if refine else []), f"{t['latency_ms']:.3f}",
                  f"{t['latency_p90_ms']:.3f}", f"{t['params'] / 1e6:.2f}M", f"{t['flops'] / 1e6:.1f}")
    console.print(table)
    for note in record["notes"]:
        console.print(f"note: {note}", **plain)
    console.print(f"wrote {record['run_dir']} (search.json, report.md, pareto.png, rank*/config.json)", **plain)
    console.print(f"next: {record['next_steps']['distill']}", **plain)
    console.print(f"then: {record['next_steps']['export']}", **plain)

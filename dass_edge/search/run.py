"""``search``: the best students of a teacher under a latency budget, written as a run folder.

Two steps, so that every mistake is caught before anything slow runs or anything is written:

* :func:`dass_edge.search.plan.prepare_search` turns plain arguments into a checked
  :class:`~dass_edge.search.plan.SearchPlan` (nothing written).
* :func:`run_search` (here) takes the plan and an accuracy scorer (``scorer(archs) -> accuracies`` with an
  ``info`` dict of provenance; :func:`dass_edge.predictor.scoring.load_scorer` builds the real one),
  runs the search algorithm under the budget, takes the Pareto front and the top-k, and writes
  ``runs/<id>/`` (:func:`dass_edge.search.run_folder.write_run`). It returns what ``search.json`` holds.

The pieces: :mod:`~dass_edge.search.costs` (latency and size per student, cached),
:mod:`~dass_edge.search.device_table` (the device's latency table), :mod:`~dass_edge.search.plan` (checks),
:mod:`~dass_edge.search.algorithms`, :mod:`~dass_edge.search.pareto` (front and picks) and
:mod:`~dass_edge.search.run_folder` (the folder ``dass-edge distill runs/<id> --rank K`` and
``dass-edge export runs/<id>`` read; see :func:`dass_edge.training.distill_run.target_from_run`).
"""

from __future__ import annotations

import datetime as _dt
import json
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from dass_edge import __version__
from dass_edge.errors import DassEdgeError
from dass_edge.search.algorithms import run_algorithm
from dass_edge.search.costs import Costs
from dass_edge.search.device_table import Progress
from dass_edge.search.pareto import pareto_front, top_picks
from dass_edge.search.plan import SearchPlan
from dass_edge.search.run_folder import FORMAT, VERSION, next_steps, write_run
from dass_edge.space import Arch
from dass_edge.training.distill import DB_RECIPE

__all__ = ["Scorer", "run_search"]

class Scorer(Protocol):
    """Predicted top-1 accuracy (percent) after KD, for a batch of students; ``info`` is its provenance."""

    info: dict

    def __call__(self, archs: Sequence[Arch]) -> Any: ...


def _scored(scorer: Scorer, counter: list[int], total: int | None, progress: Progress
            ) -> Callable[[Sequence[Arch]], list[float]]:
    """The scorer as the algorithms call it (one batch at a time), checked and reporting progress."""

    def score(archs: Sequence[Arch]) -> list[float]:
        values = np.asarray(scorer(list(archs)), dtype=np.float64).reshape(-1)
        if values.shape[0] != len(archs) or not np.all(np.isfinite(values)):
            raise DassEdgeError(f"the accuracy predictor returned {values.shape[0]} values (finite: "
                                f"{bool(np.all(np.isfinite(values)))}) for {len(archs)} students")
        counter[0] += len(archs)
        progress("search", counter[0], total)
        return values.tolist()

    return score


def _row(arch: Arch, acc: float, costs: Costs) -> dict:
    p50, p90, params, flops = costs.get(arch)
    return {"arch": arch.to_dict(), "arch_key": arch.key(), "predicted_acc": acc, "latency_ms": p50,
            "latency_p90_ms": p90, "params": params, "flops": flops}


def run_search(plan: SearchPlan, scorer: Scorer, progress: Progress | None = None) -> dict:
    """Search ``plan``'s space with ``scorer`` and write the run folder; returns ``search.json``'s content.

    Args:
        plan: from :func:`dass_edge.search.plan.prepare_search`.
        scorer: ``scorer(archs) -> predicted accuracies`` (percent, one per arch; called in batches) with
            an ``info`` dict describing the predictor (recorded in ``search.json``).
        progress: ``progress("search", scored, total)``; ``total`` is ``None`` for exhaustive search.

    Raises:
        DassEdgeError: the predictor returned malformed scores, or the run folder could not be written
            (nothing is left behind then).
    """
    progress = progress or (lambda phase, done, total: None)
    t0 = time.perf_counter()
    costs = plan.costs
    latency = costs.constrained(plan.budget_ms, plan.params_max)
    counter = [0]
    total = None if plan.algo == "exhaustive" else plan.budget_evals
    score = _scored(scorer, counter, total, progress)
    log = run_algorithm(plan.algo, plan.space, score, latency, plan.budget_ms, plan.budget_evals, plan.seed)
    if not log.candidates:  # a budget that random draws almost never meet: start from the fastest student
        log.score_new([Arch.from_dict(plan.fastest["arch"])], score, latency)
    t_arch = plan.space.teacher_arch()
    if latency(t_arch) <= plan.budget_ms:  # the teacher's own shape fits: it is a candidate, whatever was drawn
        log.score_new([t_arch], score, latency)
    scored_by_predictor = len(log.candidates)
    if plan.refine:  # half the finalists are FLOPs' picks: search where FLOPs would, then score those students too
        flops_log = run_algorithm(plan.algo, plan.space, lambda archs: [float(costs.get(a)[3]) for a in archs],
                                  latency, plan.budget_ms, plan.budget_evals, plan.seed)
        log.score_new(list(flops_log.candidates), score, latency)
    progress("search", counter[0], counter[0])  # done: the bar ends full even when the search stopped early
    archs = list(log.candidates)
    accs = [log.candidates[a].score for a in archs]
    lats = [costs.latency(a) for a in archs]
    front = pareto_front(lats, accs)
    t_index = archs.index(t_arch) if t_arch in log.candidates else None
    tolerance = float(((getattr(scorer, "info", None) or {}).get("heldout_metrics") or {}).get("mae") or 0.0)
    picks = top_picks(archs, accs, lats, front, plan.top_k, t_index, tolerance)
    refined = _refine(plan, archs, accs, progress) if plan.refine else None
    if refined is not None:  # the finalists in the order short KD put them, then the predictor's other picks
        finalists = [i for i, _ in refined["order"]]
        picks = (finalists + [i for i in picks if i not in finalists])[: max(plan.top_k, 1)]
    seconds = time.perf_counter() - t0
    on_front = set(front)

    notes = list(plan.notes)
    if len(archs) > scored_by_predictor:
        notes.append(f"{len(archs) - scored_by_predictor} of the {len(archs)} students scored came from the same "
                     "search guided by FLOPs, where the refinement takes half its finalists")
    if plan.algo != "exhaustive" and scored_by_predictor < plan.budget_evals:
        why = ("the population converged: its children were all scored already, and random draws found no new "
               "student under the budget (few fit it)" if plan.algo == "evolution"
               else "few distinct students fit the constraints")
        notes.append(f"the search stopped after {scored_by_predictor} distinct students (of --budget-evals "
                     f"{plan.budget_evals}): {why}")
    if len(picks) < plan.top_k:
        notes.append(f"the search scored only {len(picks)} students, fewer than --top-k {plan.top_k}")
    support = (getattr(scorer, "info", None) or {}).get("support")
    if support:
        notes.append(f"the predictor adapted to {support['students']} students of this task you distilled "
                     "(--support; their validation accuracy, K-shot)")
    if refined is not None:
        notes.append(refined["note"])
    if picks and archs[picks[0]] == t_arch:
        notes.append(f"rank 1 is the teacher's own shape (distilled, it gives back the teacher): the budget does "
                     f"not bind, and no faster student is predicted more accurate by more than the predictor's "
                     f"error ({tolerance:g} points); lower the budget for a smaller, faster student")
    top = []
    early = dict(refined["order"]) if refined is not None else {}
    for rank, i in enumerate(picks, start=1):
        top.append({"rank": rank, **_row(archs[i], accs[i], costs), "on_front": i in on_front,
                    **({"refine_val_acc": early[i]} if i in early else {}), "config": f"rank{rank}/config.json"})
    tinfo = {"path": plan.teacher_path, "sha256": plan.teacher_sha256, **plan.teacher_cost,
             "val_acc": plan.teacher_meta.get("val_acc"), "test_acc": plan.teacher_meta.get("test_acc")}
    record: dict[str, Any] = {
        "format": FORMAT, "version": VERSION, "id": plan.run_id, "run_dir": str(plan.out),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "dass_edge_version": __version__,
        "budget_ms": plan.budget_ms, "budget": plan.budget.to_dict(plan.teacher_cost["latency_ms"]),
        "budget_binds": plan.budget_binds, "device": plan.device,
        "table": plan.table_info, "predictor": _plain(getattr(scorer, "info", None) or {}),
        "teacher": tinfo, "task": plan.task, "data_dir": plan.data_dir, "resolution": plan.teacher.spec.resolution,
        "num_classes": plan.teacher.spec.num_classes,
        "space": {"fixed_last_stage": plan.space.fixed_last_stage, "size": plan.space.size(),
                  "width_options": [list(o) for o in plan.space.width_options],
                  "max_depths": list(plan.space.max_depths)},
        "algo": plan.algo, "budget_evals": plan.budget_evals, "seed": plan.seed, "top_k": plan.top_k,
        "params_max": plan.params_max, "inputs": plan.inputs,
        "evaluated": len(archs), "seconds": round(seconds, 3), "fastest": plan.fastest,
        "front": [{k: v for k, v in _row(archs[i], accs[i], costs).items() if k != "arch"} for i in front],
        "top": top, "refine": refined["record"] if refined is not None else None, "notes": notes,
        "next_steps": next_steps(plan.out, plan.device, plan.table.backend, plan.table.precision),
    }
    rows = [{**{k: v for k, v in _row(a, accs[i], costs).items() if k != "arch"}, "on_front": i in on_front}
            for i, a in enumerate(archs)]
    write_run(plan, record, rows)
    return record


def _refine(plan: SearchPlan, archs: list[Arch], accs: list[float], progress: Progress) -> dict:
    """Short-KD refinement of the predictor's top ``plan.refine`` candidates (all fit the budget):
    ``order`` [(candidate index, accuracy after the short run)] best first, the record and a note."""
    from dass_edge.data.builtin import cache_dir
    from dass_edge.search.refine import finalists_with_source, refine_order, short_kd

    flops = [plan.costs.get(a)[3] for a in archs]
    chosen = finalists_with_source(archs, accs, plan.refine, hedge=flops)
    finalists = [i for i, _ in chosen]
    source = {"score": "predictor", "hedge": "flops", "fill": "predictor (same depth pattern)"}
    by_predictor = sum(1 for _, who in chosen if who == "score")
    t0 = time.perf_counter()
    runs = short_kd(plan.teacher, plan.data, [archs[i] for i in finalists], plan.refine_epochs, seed=plan.seed,
                    device=plan.train_device, progress=lambda done, total: progress("refine", done, total),
                    work_dir=cache_dir() / "refine", teacher_sha256=plan.teacher_sha256, cache_dir=cache_dir())
    reused = sum(r.reused for r in runs)
    order = refine_order([r.val_acc for r in runs], [accs[i] for i in finalists])
    seconds = time.perf_counter() - t0
    ranked = [(finalists[j], runs[j].val_acc) for j in order]
    moved = ranked[0][0] != finalists[0]
    record = {"finalists": len(finalists), "epochs": plan.refine_epochs, "recipe_epochs": DB_RECIPE.epochs,
              "device": plan.train_device, "seconds": round(seconds, 1),
              "students": [{"arch_key": archs[i].key(), "predicted_acc": accs[i], "flops": flops[i],
                            "chosen_by": source[chosen[j][1]], "val_acc": runs[j].val_acc,
                            "seconds": round(runs[j].seconds, 1), "reused": runs[j].reused}
                           for j, i in enumerate(finalists)],
              "predictor_top1": archs[finalists[0]].key(), "changed_rank1": moved, "reused": reused}
    note = (f"rank 1 was chosen by short-KD refinement: {len(finalists)} finalists (the predictor's best student "
            f"of each of its {by_predictor} best depth patterns, then the largest by FLOPs of "
            f"other depth patterns) were distilled for {plan.refine_epochs} of the recipe's "
            f"{DB_RECIPE.epochs} epochs on this task ({seconds:.0f} s"
            + (f", {reused} of them read back from an interrupted or identical earlier run" if reused else "")
            + "; "
            "--refine 0 skips it), and ranked by their validation accuracy then ("
            + ", ".join(f"{archs[i].key()} {acc:.1f}%" for i, acc in ranked) + ")"
            + (f"; the predictor alone would have ranked {archs[finalists[0]].key()} first" if moved else ""))
    return {"order": ranked, "record": record, "note": note}


def _plain(info: dict) -> dict:
    """Provenance as plain JSON data (paths and numpy numbers become strings/numbers)."""
    return json.loads(json.dumps(dict(info), default=lambda v: v.item() if hasattr(v, "item") else str(v)))

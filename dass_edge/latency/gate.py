"""The fidelity gate: a table is judged on whole students before anyone trusts it.

A table measured while other jobs ran can come out badly: seen here, 50% of students within +-10%
(Spearman 0.83) on a machine that looked idle, a minute before a run that reached 100%, and nothing
said so. The gate compares a fresh table's leave-one-out fidelity with the profile's target. When
it falls short it re-measures what was disturbed, within a time budget:

- every session of the students predicted worst, and of the blocks they are made of (either side of
  the comparison may be the disturbed one);
- sessions much slower than their own model's undisturbed level (other jobs only ever slow a
  session down, so a slow session is a preempted one).

Of the old and the new session in one slot, the faster is kept: other jobs only add time, so it is
the less disturbed of the two.

Each attempt is re-assembled and the best table seen is kept. One that still falls short is saved
with ``fidelity_ok: false`` and a one-line warning, which ``search`` repeats in its notes.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, MutableMapping
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["FidelityTarget", "GateReport", "disturbed_rounds", "fidelity_warning", "run_gate", "worst_students"]

Rounds = MutableMapping[str, MutableMapping[int, list[float]]]

#: A session whose median is this much slower than its model's undisturbed level counts as preempted.
DISTURBED_RATIO = 1.10
#: The time budget is the real bound; this only stops a gate that keeps finding noise (CI once needed more than 4).
MAX_ATTEMPTS = 10


@dataclass(frozen=True)
class FidelityTarget:
    """What a table must reach on its fidelity students (leave-one-out) to be trusted.

    Args:
        within_10pct: share of students whose corrected prediction is within +-10% of their measured median.
        spearman: rank correlation of predicted vs measured medians.
    """

    within_10pct: float = 0.90
    spearman: float = 0.95

    def met(self, fidelity: dict) -> bool | None:
        """True/False; None when the table has no fidelity students (nothing to judge)."""
        if not fidelity.get("students"):
            return None
        w, rho = fidelity.get("within_10pct"), fidelity.get("spearman")
        return w is not None and rho is not None and w >= self.within_10pct and rho >= self.spearman

    def describe(self, fidelity: dict) -> str:
        """``80% within ±10% (target 90%), Spearman 0.912 (target 0.95)``."""
        rho, within = fidelity.get("spearman"), fidelity.get("within_10pct") or 0.0
        return (f"{100 * within:.0f}% within ±10% (target {100 * self.within_10pct:.0f}%), "
                f"Spearman {'n/a' if rho is None else f'{rho:.3f}'} (target {self.spearman:.2f})")


@dataclass
class GateReport:
    """What the gate did; stored as ``fidelity.gate`` in the table."""

    target: dict
    ok: bool | None
    attempts: int = 0  # re-measurement rounds run
    remeasured: int = 0  # (model, session) pairs measured again
    seconds: float = 0.0
    budget_s: float = 0.0
    first: dict | None = None  # fidelity before the gate (within_10pct, rmspe, spearman)

    def to_dict(self) -> dict:
        return asdict(self)


def _figures(fidelity: dict) -> dict:
    return {k: fidelity.get(k) for k in ("within_10pct", "rmspe", "spearman")}


def _score(fidelity: dict, target: FidelityTarget) -> tuple:
    rho = fidelity.get("spearman")
    return (bool(target.met(fidelity)), fidelity.get("within_10pct") or 0.0, -1.0 if rho is None else rho)


def disturbed_rounds(rounds: Rounds, ratio: float = DISTURBED_RATIO) -> list[tuple[str, int]]:
    """``(item, round)`` pairs whose session median exceeds ``ratio`` x the lower quartile of that item's
    session medians (its undisturbed level), most disturbed first."""
    found = []
    for item, by_round in rounds.items():
        med = {r: float(np.median(v)) for r, v in by_round.items() if len(v)}
        if len(med) < 2:
            continue
        base = float(np.percentile(list(med.values()), 25))
        found += [(m / base, item, r) for r, m in med.items() if base > 0 and m / base > ratio]
    return [(item, r) for _, item, r in sorted(found, key=lambda t: -t[0])]


def worst_students(fidelity: dict) -> list[int]:
    """Indexes of the students outside +-10% (else the worst fifth, at least 3), worst first."""
    samples = fidelity.get("samples") or []
    err = [abs(s["predicted_p50_ms"] / s["p50_ms"] - 1.0) for s in samples]
    order = sorted(range(len(err)), key=lambda i: -err[i])
    off = [i for i in order if err[i] > 0.10]
    return off or order[: max(3, len(order) // 5)]


def run_gate(
    data: dict,
    rounds: Rounds,
    assemble: Callable[[], dict],
    remeasure: Callable[[int], None],
    student_parts: Callable[[int], list[str]],
    target: FidelityTarget,
    budget_s: float,
    sec_per_round: float,
) -> tuple[dict, GateReport]:
    """Check ``data`` (an assembled table) against ``target``; re-measure and re-assemble while it falls short.

    Args:
        data: the table as first assembled.
        rounds: per item, per round, the per-call microseconds; the gate drops the rounds to measure again
            from it, and ``remeasure`` must fill them back in (the profiler's journal does).
        assemble: builds a table from the current ``rounds``.
        remeasure: measures every round missing from ``rounds``; gets the attempt number (1, 2, ...).
        student_parts: item ids that make up fidelity student ``i`` (the student and its blocks).
        target: the fidelity to reach.
        budget_s: seconds the gate may spend measuring again (0: judge only).
        sec_per_round: the measured seconds per (model, round), to fit each attempt into the budget.

    Returns:
        The best table seen (``fidelity.fidelity_ok`` and ``fidelity.gate`` filled in) and the report.
    """
    fid = data["fidelity"]
    report = GateReport(target=asdict(target), ok=target.met(fid), budget_s=float(budget_s), first=_figures(fid))
    best, t0 = data, time.perf_counter()
    per_round = max(float(sec_per_round), 1e-4)
    while report.ok is False and report.attempts < MAX_ATTEMPTS:
        left = budget_s - (time.perf_counter() - t0)
        room = int(left / per_round)
        if room < 1:
            break
        worst: list[tuple[str, int]] = []
        for i in worst_students(best["fidelity"]):
            worst += [(item, r) for item in student_parts(i) for r in rounds.get(item, {})]
        worst = list(dict.fromkeys(worst))[:room]
        chosen = set(worst)
        slow = [p for p in disturbed_rounds(rounds) if p not in chosen][: room - len(worst)]
        if not worst and not slow:
            break
        kept = {(item, r): rounds[item].pop(r) for item, r in worst + slow}
        report.attempts += 1
        t1 = time.perf_counter()
        remeasure(report.attempts)
        report.remeasured += len(worst) + len(slow)
        per_round = max((time.perf_counter() - t1) / (len(worst) + len(slow)), 1e-4)
        for (item, r), old in kept.items():  # of two sessions in one slot, the undisturbed (faster) one
            new = rounds[item].get(r)
            if new is None or statistics.median(old) < statistics.median(new):
                rounds[item][r] = old
        cand = assemble()
        if _score(cand["fidelity"], target) > _score(best["fidelity"], target):
            best = cand
        report.ok = target.met(best["fidelity"])
    report.seconds = round(time.perf_counter() - t0, 2)
    best["fidelity"]["fidelity_ok"] = report.ok
    best["fidelity"]["gate"] = report.to_dict()
    return best, report


def fidelity_warning(fidelity: dict, device: str) -> str | None:
    """One line for a table below its fidelity target (None when it met it or cannot be judged).

    Tables made before the gate carry no verdict; they are judged against the default target.
    """
    gate = fidelity.get("gate") or {}
    target = FidelityTarget(**gate["target"]) if isinstance(gate.get("target"), dict) else FidelityTarget()
    ok = fidelity.get("fidelity_ok")
    if ok is None:
        ok = target.met(fidelity)
    if ok is not False:
        return None
    return (f"the {device} latency table is below its fidelity target ({target.describe(fidelity)}): its "
            f"latencies may be off by more than 10%; re-profile on a quieter machine (dass-edge profile "
            f"--device {device})")

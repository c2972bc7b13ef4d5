"""The fidelity gate (``dass_edge.latency.gate``): judging a table, re-measuring what was disturbed,
marking a table that stays below target, and ``search`` warning about it.

Disturbance is real, not simulated figures: :class:`Cotenant` wraps the onnxruntime runner so that
chosen models *sleep* inside every timed call (what a co-tenant holding the core does to them), for
their first sessions only (a burst that passes) or for good.
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import run_cli

from dass_edge.errors import DassEdgeError
from dass_edge.latency import LatencyTable, default_teacher_spec, load_profile, load_table, profile_device
from dass_edge.latency.gate import FidelityTarget, disturbed_rounds, fidelity_warning, run_gate, worst_students
from dass_edge.latency.runners import OrtRunner
from dass_edge.search.plan import prepare_search
from dass_edge.search.run import run_search
from dass_edge.space import SearchSpace, spec_params
from dass_edge.spec import ModelSpec

#: Wide enough that students' latencies differ clearly (ranks mean something), small enough to profile in seconds.
TEACHER = ModelSpec.uniform((8, 16, 32, 64), (1, 1, 1, 1), num_classes=3, resolution=32)
N_STUDENTS = 10
TARGET = {"within_10pct": 0.7, "spearman": 0.7}  # what every clean run of this small profile reaches here


def gate_profile(folder: Path, remeasure_s: float) -> Path:
    doc = {"name": "gated", "description": "small profile for the gate tests", "backend": "onnxruntime",
           "precision": "fp32", "batch": 1, "threads": 1, "resolutions": [32],
           "measurement": {"warmup_s": 0.002, "iterations": 10, "sessions": 3, "fidelity_students": N_STUDENTS,
                           "fidelity_sessions": 5},
           "fidelity_target": {**TARGET, "remeasure_s": remeasure_s}}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "gated.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


class Cotenant:
    """Makes chosen model files slow: each call of theirs sleeps ``sleep_s`` first.

    Args:
        prefixes: model file name prefixes to slow down (the profiler names files ``NNNN.onnx`` in plan order).
        sleep_s: added to every call.
        sessions: slow only each file's first ``sessions`` sessions (None: always).
    """

    def __init__(self, prefixes: set[str], sleep_s: float, sessions: int | None) -> None:
        self.prefixes, self.sleep_s, self.sessions = prefixes, sleep_s, sessions
        self.opened: Counter[str] = Counter()
        self.slowed = 0

    def install(self, monkeypatch) -> None:
        activate, run = OrtRunner.activate_impl, OrtRunner.run_impl  # run_impl: the call that is timed
        me = self

        def slow_activate(runner) -> None:
            activate(runner)
            name = Path(str(runner.model)).name
            me.opened[name] += 1
            runner._cotenant = name[:4] in me.prefixes and (me.sessions is None or me.opened[name] <= me.sessions)
            me.slowed += runner._cotenant

        def slow_run(runner) -> None:
            if getattr(runner, "_cotenant", False):
                time.sleep(me.sleep_s)
            run(runner)

        monkeypatch.setattr(OrtRunner, "activate_impl", slow_activate)
        monkeypatch.setattr(OrtRunner, "run_impl", slow_run)


def student_prefixes(picks: list[int]) -> set[str]:
    """File prefixes of fidelity students ``picks`` (after the overhead model and every entry)."""
    from dass_edge.latency import space_entries

    first = 1 + len(space_entries(SearchSpace(TEACHER)))
    return {f"{first + i:04d}" for i in picks}


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("DASS_EDGE_TABLES", str(tmp_path / "tables"))
    monkeypatch.setenv("DASS_EDGE_PROFILES", str(tmp_path / "profiles"))


# -- the parts ---------------------------------------------------------------------------------------

def test_target_met_and_described():
    t = FidelityTarget()
    assert (t.within_10pct, t.spearman) == (0.9, 0.95)
    assert t.met({"students": 30, "within_10pct": 0.9, "spearman": 0.95}) is True
    assert t.met({"students": 30, "within_10pct": 0.87, "spearman": 0.99}) is False
    assert t.met({"students": 30, "within_10pct": 1.0, "spearman": None}) is False
    assert t.met({"students": 0, "within_10pct": None, "spearman": None}) is None
    assert t.describe({"within_10pct": 0.5, "spearman": 0.826}) == \
        "50% within ±10% (target 90%), Spearman 0.826 (target 0.95)"


def test_disturbed_rounds_are_the_slow_sessions_worst_first():
    rounds = {"a": {0: [100.0] * 5, 1: [101.0] * 5, 2: [150.0] * 5, 3: [100.0] * 5},
              "b": {0: [50.0] * 5, 1: [60.0] * 5, 2: [52.0] * 5, 3: [50.5] * 5},
              "c": {0: [10.0] * 5}}  # one session: nothing to compare with
    assert disturbed_rounds(rounds) == [("a", 2), ("b", 1)]
    assert disturbed_rounds(rounds, ratio=1.3) == [("a", 2)]


def test_worst_students_are_those_outside_ten_percent():
    samples = [{"p50_ms": 1.0, "predicted_p50_ms": p} for p in (1.0, 1.3, 0.95, 0.8, 1.05)]
    assert worst_students({"samples": samples}) == [1, 3]
    close = [{"p50_ms": 1.0, "predicted_p50_ms": 1.0 + 0.01 * i} for i in range(10)]
    assert worst_students({"samples": close}) == [9, 8, 7]  # none outside: the worst fifth, at least 3


def test_gate_keeps_the_better_table_and_stops_at_the_budget():
    """A re-measurement that makes things worse is not kept; a zero budget only judges."""
    rounds = {"x": {0: [1.0], 1: [9.0]}}
    tables = iter([{"fidelity": {"students": 3, "within_10pct": 0.3, "spearman": 0.2}}])
    first = {"fidelity": {"students": 3, "within_10pct": 0.6, "spearman": 0.9}}
    calls = []

    def remeasure(attempt):
        calls.append(attempt)
        time.sleep(0.4)  # what measuring one slot takes here
        rounds["x"][1] = [20.0]  # slower again: the old (faster) session is kept

    best, rep = run_gate(copy.deepcopy(first), rounds, lambda: next(tables), remeasure, lambda i: [],
                         FidelityTarget(), budget_s=0.5, sec_per_round=0.4)
    assert calls == [1] and rep.attempts == 1 and rep.remeasured == 1  # one slot fits 0.5 s, the second does not
    assert rounds["x"][1] == [9.0]
    assert best["fidelity"]["within_10pct"] == 0.6 and best["fidelity"]["fidelity_ok"] is False
    assert best["fidelity"]["gate"]["first"]["within_10pct"] == 0.6
    judged, rep0 = run_gate(copy.deepcopy(first), rounds, lambda: first, remeasure, lambda i: [], FidelityTarget(),
                            budget_s=0.0, sec_per_round=0.1)
    assert rep0.attempts == 0 and judged["fidelity"]["fidelity_ok"] is False and len(calls) == 1


def test_warning_for_marked_and_for_old_tables():
    good = {"students": 30, "within_10pct": 0.97, "spearman": 0.99, "fidelity_ok": True}
    assert fidelity_warning(good, "cpu") is None
    marked = {"students": 30, "within_10pct": 0.6, "spearman": 0.9, "fidelity_ok": False,
              "gate": {"target": {"within_10pct": 0.8, "spearman": 0.9}}}
    line = fidelity_warning(marked, "cpu")
    assert line.startswith("the cpu latency table is below its fidelity target (60% within ±10% (target 80%)")
    assert "dass-edge profile --device cpu" in line and "\n" not in line
    old = {"students": 30, "within_10pct": 0.5, "spearman": 0.826}  # made before the gate: judged by the default
    assert "(target 90%)" in fidelity_warning(old, "cpu")
    assert fidelity_warning({"students": 0, "within_10pct": None, "spearman": None}, "cpu") is None


def test_profile_target_field(tmp_path):
    assert (load_profile("cpu").target_within_10pct, load_profile("cpu").target_spearman) == (0.9, 0.95)
    p = load_profile(gate_profile(tmp_path, 7))
    assert (p.target_within_10pct, p.target_spearman, p.remeasure_s) == (0.7, 0.7, 7.0)
    doc = yaml.safe_load(p.source and Path(p.source).read_text())
    for bad, msg in (({"within_10pct": 1.5}, "within_10pct must be in 0..1"), ({"spearmann": 0.9}, "keys among"),
                     ({"remeasure_s": "soon"}, "must be float")):
        (tmp_path / "bad.yaml").write_text(yaml.safe_dump({**doc, "fidelity_target": bad}))
        with pytest.raises(DassEdgeError, match=msg):
            load_profile(tmp_path / "bad.yaml")


# -- the gate on a real, disturbed measurement -----------------------------------------------------

def skip_if_machine_is_noisy_now(tmp_path: Path, cot: Cotenant) -> None:
    """Skip when this machine's own noise is what keeps tables below ``TARGET`` right now.

    CI's shared 2-core VM once reached 50% within ±10% (2 students off beside the 3 slowed ones) and missed the
    target after 4 re-measurements, and another time 20% within ±10% on the first pass (5 off beside them). No
    re-measurement fixes a machine whose every session is noisy, and that says nothing about the gate. The same
    profile measured again with the co-tenant gone, gate included, tells the two cases apart. (Its first pass is no
    guide: at load 2 on 2 cores an undisturbed first pass here is often 30% within ±10%, and its gate recovers it.)
    """
    cot.prefixes = set()  # the co-tenant leaves
    clean = profile_device(str(gate_profile(tmp_path / "clean", remeasure_s=30)), TEACHER, students=N_STUDENTS,
                           out=tmp_path / "clean.json")
    if not clean.gate.ok:
        pytest.skip("undisturbed, this machine's table reaches "
                    f"{FidelityTarget(**TARGET).describe(clean.table.fidelity)}: it is too noisy now to tell "
                    "whether the gate recovered a disturbed one")


def measure_with_burst(folder: Path, monkeypatch) -> tuple:
    """Profile with three of ten students slowed for their first 5 sessions (all of the first pass)."""
    monkeypatch.setenv("DASS_EDGE_TABLES", str(folder / "tables"))  # a fresh store: nothing to resume from
    cot = Cotenant(student_prefixes([0, 3, 6]), sleep_s=0.0004, sessions=5)
    cot.install(monkeypatch)
    result = profile_device(str(gate_profile(folder / "profiles", remeasure_s=30)), TEACHER, students=N_STUDENTS)
    assert cot.slowed == 15  # the burst happened: 3 students x 5 sessions
    assert result.gate.first["within_10pct"] <= 0.7  # the three slowed students are far off
    assert result.gate.attempts >= 1 and result.gate.remeasured >= 15
    return result, cot


@pytest.mark.slow
def test_a_passing_burst_is_remeasured_and_the_table_recovers(tmp_path, monkeypatch):
    """Three of ten students run with a co-tenant for their first 5 sessions (all of the first pass):
    the first table misses the target; the gate re-measures them, after the burst, and the table meets it.

    Timing on a shared VM is physical: a trial the gate could not recover is tried once more (a fresh profile),
    and a second miss fails unless the machine itself is too noisy now (see ``skip_if_machine_is_noisy_now``).
    A gate that does not re-measure the slowed students misses in every trial on any machine.
    """
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load > 1.5 * cores:
        pytest.skip(f"1-minute load {load:.1f} on {cores} cores: other jobs disturb every student, so no "
                    "re-measurement can recover a table here (the gate's marking is tested above)")
    result, cot = measure_with_burst(tmp_path / "trial1", monkeypatch)
    if not result.gate.ok:
        monkeypatch.undo()  # the first co-tenant leaves (and the environment with it: set again below)
        monkeypatch.setenv("DASS_EDGE_PROFILES", str(tmp_path / "profiles"))
        result, cot = measure_with_burst(tmp_path / "trial2", monkeypatch)
    gate = result.gate
    if not gate.ok:
        skip_if_machine_is_noisy_now(tmp_path, cot)
    assert gate.ok is True and result.table.fidelity["fidelity_ok"] is True
    saved = json.loads(result.path.read_text())
    assert saved["fidelity"]["fidelity_ok"] is True and saved["fidelity"]["gate"]["attempts"] == gate.attempts
    assert saved["fidelity"]["within_10pct"] >= TARGET["within_10pct"]
    assert saved["fidelity"]["spearman"] >= TARGET["spearman"]
    assert result.measured == 1 * 5 + len(result.table.entries) * 3 + N_STUDENTS * 5  # re-measures replace, not add
    samples = saved["fidelity"]["samples"]
    for i in (0, 3, 6):  # the slowed students no longer carry the co-tenant's sleep (0.4 ms on a ~0.15 ms run):
        # measured against half of it, not a ratio, so that a noisy VM's ordinary 25-30% spread does not fail it
        assert samples[i]["p50_ms"] - samples[i]["predicted_p50_ms"] < 1000 * cot.sleep_s / 2


@pytest.mark.slow
def test_a_table_that_stays_bad_is_marked_and_search_warns(tmp_path, monkeypatch, capsys):
    cot = Cotenant(student_prefixes([0, 3, 6]), sleep_s=0.0004, sessions=None)
    cot.install(monkeypatch)
    profile = gate_profile(tmp_path / "profiles", remeasure_s=2)
    out = tmp_path / "bad.json"
    monkeypatch.setattr("dass_edge.latency.teacher_spec", lambda name: TEACHER)  # the small teacher (imported lazily)
    t0 = time.perf_counter()
    code, stdout, stderr = run_cli(["profile", "--device", str(profile), "--json", "--out", str(out),
                                    "--students", str(N_STUDENTS)], capsys)
    assert code == 0, stderr
    summary = json.loads(stdout)
    fid = json.loads(out.read_text())["fidelity"]
    assert fid["fidelity_ok"] is False and summary["fidelity"]["fidelity_ok"] is False
    assert fid["gate"]["attempts"] >= 1 and fid["gate"]["remeasured"] >= 1 and fid["gate"]["ok"] is False
    assert fid["within_10pct"] < TARGET["within_10pct"]
    assert fid["gate"]["seconds"] < 2 + 10 and time.perf_counter() - t0 < 120  # the budget bounds the gate
    warning = [line for line in stderr.splitlines() if line.startswith("warning: ")]
    assert len(warning) == 1 and "the gated latency table is below its fidelity target" in warning[0]

    # search on a table marked so: the shipped demo table carrying this verdict (same fidelity block)
    data = copy.deepcopy(load_table("cpu", 32, default_teacher_spec(), this_machine=False).data)
    data["fidelity"] = fid
    table = LatencyTable(data)
    space = SearchSpace(default_teacher_spec())

    def scorer(archs):
        return np.array([np.log(spec_params(space.to_spec(a))) for a in archs])

    scorer.info = {"version": "params-only"}
    plan = prepare_search(0.35, table=table, out=tmp_path / "run", budget_evals=50, top_k=1)
    record = run_search(plan, scorer)
    saved = json.loads((tmp_path / "run" / "search.json").read_text())
    for notes in (record["notes"], saved["notes"]):
        assert sum("below its fidelity target" in n for n in notes) == 1
    assert saved["table"]["fidelity"]["fidelity_ok"] is False


"""Budgets that fit any CPU (relative to the teacher), tight budgets that stay fast (shrink-to-fit
sampling), the teacher's own shape when the budget does not bind, ``--replace``, runnable hints and
the notes a search adds about its inputs.

Latency is the shipped CPU table (``this_machine=False``, so these run anywhere); accuracy is the
mechanics-only :class:`ToyScorer` of ``test_search_run``.
"""

from __future__ import annotations

import json
import random

import pytest
from test_search_run import ToyScorer

from dass_edge.errors import DassEdgeError
from dass_edge.latency import default_teacher_spec, load_table
from dass_edge.latency.table import LatencyTable
from dass_edge.search.algorithms import _Feasible, evolution, shrink
from dass_edge.search.budget import Budget, parse_budget
from dass_edge.search.costs import Costs
from dass_edge.search.plan import prepare_search
from dass_edge.search.report import render_markdown
from dass_edge.search.run import run_search
from dass_edge.space import Arch, SearchSpace


@pytest.fixture(scope="module")
def table():
    return load_table("cpu", 32, default_teacher_spec(), this_machine=False)


@pytest.fixture(scope="module")
def space():
    return SearchSpace(default_teacher_spec())


@pytest.fixture(scope="module")
def costs(space, table):
    return Costs(space, table)


def _plan(table, out, budget, **kw):
    return prepare_search(budget, table=table, out=out, **{"budget_evals": 200, "top_k": 3, **kw})


# --- parsing -------------------------------------------------------------------------------------
@pytest.mark.parametrize("given, speedup, value, relative, text", [
    ("0.35", None, 0.35, False, "0.35"),
    (0.35, None, 0.35, False, "0.35"),
    ("50%", None, 0.5, True, "50%"),
    (" 12.5% ", None, 0.125, True, "12.5%"),
    (None, 2, 0.5, True, "2x"),
    (None, "4", 0.25, True, "4x"),
])
def test_parse_budget(given, speedup, value, relative, text):
    b = parse_budget(given, speedup)
    assert (b.value, b.relative, b.text) == (pytest.approx(value), relative, text)
    assert b.resolve(0.8) == pytest.approx(value * 0.8 if relative else value)


@pytest.mark.parametrize("given, speedup, message", [
    (None, None, "no latency budget"),
    ("50%", 2, "not both"),
    ("0", None, "--latency-ms must be a positive"),
    ("-1%", None, "--latency-ms must be a positive"),
    ("nan", None, "--latency-ms must be a positive"),
    ("fast", None, "--latency-ms must be milliseconds (0.35) or a share"),
    (None, 0, "--speedup must be a positive"),
    (None, "quick", "--speedup must be a number"),
])
def test_parse_budget_rejects(given, speedup, message):
    with pytest.raises(DassEdgeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_budget(given, speedup)


# --- relative budgets ---------------------------------------------------------------------------
def test_relative_budget_is_a_share_of_the_teacher_on_this_table(table, tmp_path):
    plan = _plan(table, tmp_path / "a", "50%")
    teacher_ms = plan.teacher_cost["latency_ms"]
    assert plan.budget_ms == pytest.approx(0.5 * teacher_ms) and plan.budget_binds
    same = _plan(table, tmp_path / "b", None, speedup=2)
    assert same.budget_ms == pytest.approx(plan.budget_ms)
    record = run_search(plan, ToyScorer())
    assert record["budget"] == {"given": "50%", "relative": True, "value": 0.5, "ms": pytest.approx(plan.budget_ms),
                                "teacher_ms": pytest.approx(teacher_ms), "text": record["budget"]["text"]}
    assert "50% of the teacher's" in record["budget"]["text"] and record["inputs"]["latency_ms"] == "50%"
    assert all(p["latency_ms"] <= plan.budget_ms for p in record["top"])
    assert "50% of the teacher's" in (tmp_path / "a" / "report.md").read_text()


@pytest.mark.parametrize("budget, speedup, hint", [
    ("5%", None, "raise --latency-ms to at least "),
    (None, 20, "lower --speedup to at most "),
])
def test_infeasible_relative_budget_says_how_far_to_go(table, tmp_path, budget, speedup, hint):
    with pytest.raises(DassEdgeError) as e:
        _plan(table, tmp_path / "run", budget, speedup=speedup)
    msg = str(e.value)
    assert msg.startswith("no student fits ") and ("of the teacher's" in msg or "faster than the teacher's" in msg)
    assert hint in msg and not (tmp_path / "run").exists()
    # the suggested value is feasible, and just so
    suggested = msg.rsplit(hint, 1)[1]
    if speedup is None:
        assert suggested.endswith("%")
        _plan(table, tmp_path / "ok", suggested)
    else:
        _plan(table, tmp_path / "ok", None, speedup=float(suggested))


# --- tight budgets --------------------------------------------------------------------------------
def test_shrink_steps_down_to_the_smallest(space, costs):
    rng = random.Random(0)
    a = space.teacher_arch()
    steps = 0
    while (b := shrink(space, a, rng)) is not None:
        assert space.contains(b) and costs.size(b)[0] < costs.size(a)[0]  # strictly smaller each step
        a, steps = b, steps + 1
    assert a == space.smallest_arch() and steps >= 8


def test_tight_budget_draws_cost_a_few_lookups(space, costs):
    """Within 5% of the fastest student, rejection sampling needs hundreds of draws per fit (1 in ~1e6 fits);
    shrinking the last draw needs a few dozen lookups."""
    budget = 1.05 * costs.latency(space.smallest_arch())
    calls = [0]

    def latency(a: Arch) -> float:
        calls[0] += 1
        return costs.latency(a)

    feasible = _Feasible(space, latency, budget, random.Random(0))
    drawn = [feasible.sample() for _ in range(50)]
    assert all(a is not None and costs.latency(a) <= budget for a in drawn)
    assert calls[0] / 50 < 100


def test_tight_budget_search_finishes_with_feasible_students(space, costs):
    fastest = costs.latency(space.smallest_arch())
    budget = 1.3 * fastest
    calls = [0]

    def latency(a: Arch) -> float:
        calls[0] += 1
        return costs.latency(a)

    toy = ToyScorer()
    log = evolution(space, toy, latency, budget, 2000, random.Random(0))
    lats = [c.latency_ms for c in log.candidates.values()]
    assert len(lats) >= 20 and max(lats) <= budget
    assert calls[0] < 400_000  # rejection sampling: ~1,000 lookups per draw, ~100 draws per round


# --- the teacher's own shape ------------------------------------------------------------------------
class ToyWithError(ToyScorer):
    info = {**ToyScorer.info, "heldout_metrics": {"spearman": 0.0, "mae": 5.0}}


def test_teacher_shape_ranks_first_when_the_budget_does_not_bind(table, tmp_path):
    record = run_search(_plan(table, tmp_path / "run", "200%", budget_evals=300), ToyWithError())
    assert record["budget_binds"] is False
    top, teacher = record["top"], record["teacher"]
    assert top[0]["arch_key"] == teacher["arch_key"]
    assert all(p["latency_ms"] < teacher["latency_ms"] for p in top[1:])
    assert any("rank 1 is the teacher's own shape" in n for n in record["notes"])


def test_teacher_shape_is_never_beaten_by_a_slower_student(table, tmp_path):
    """Without an error margin, a student predicted more accurate may rank above the teacher's shape, but
    no pick is slower than the teacher's shape (distilled, it gives back the teacher)."""
    record = run_search(_plan(table, tmp_path / "run", "200%", budget_evals=300), ToyScorer())
    t = record["teacher"]
    keys = [p["arch_key"] for p in record["top"]]
    assert all(p["latency_ms"] < t["latency_ms"] or p["arch_key"] == t["arch_key"] for p in record["top"])
    rows = (tmp_path / "run" / "candidates.csv").read_text()
    assert t["arch_key"] in rows  # scored, whatever the draws were
    assert len(keys) == 3


# --- --replace ---------------------------------------------------------------------------------------
def test_replace_reruns_into_a_search_run_folder_only(table, tmp_path):
    run = tmp_path / "run"
    first = run_search(_plan(table, run, "50%", seed=1), ToyScorer())
    (run / "rank1" / "student.safetensors").write_text("from the earlier run")
    with pytest.raises(DassEdgeError, match="already exists and is not empty.*--replace"):
        _plan(table, run, "50%")
    second = run_search(_plan(table, run, "40%", replace=True), ToyScorer())
    saved = json.loads((run / "search.json").read_text())
    assert saved["budget"]["given"] == "40%" and saved["id"] == second["id"] and first["budget"]["given"] == "50%"
    assert not (run / "rank1" / "student.safetensors").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no staging or set-aside folder left
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(DassEdgeError, match="only replaces a search run folder"):
        _plan(table, other, "50%", replace=True)
    assert (other / "notes.txt").read_text() == "mine"


# --- hints and notes ---------------------------------------------------------------------------------
def test_missing_device_table_hint_is_runnable(tmp_path):
    with pytest.raises(DassEdgeError) as e:
        prepare_search("50%", device="jetson-orin-nano", out=tmp_path / "run")
    msg = str(e.value)
    assert "build one with: dass-edge profile --device jetson-orin-nano (on the device, or from this machine " \
           "with --host user@device)" in msg
    assert "<" not in msg and "--teacher" not in msg  # the demo teacher needs no flag


def test_a_weak_table_is_flagged(table, tmp_path):
    data = json.loads(json.dumps(table.data))
    data["fidelity"].update(within_10pct=0.6, session_spread=1.59, students=30)
    weak = LatencyTable(data)
    record = run_search(_plan(weak, tmp_path / "run", "50%"), ToyScorer())
    note = next(n for n in record["notes"] if "unreliable" in n)
    assert "60% of the 30" in note and "differed by 59%" in note and note.endswith("dass-edge profile --device cpu")
    clean = run_search(_plan(table, tmp_path / "clean", "50%"), ToyScorer())
    assert not any("unreliable" in n for n in clean["notes"])  # the shipped table passed its check


def test_report_prints_the_predictor_database_in_words(table, tmp_path):
    class WithDb(ToyScorer):
        info = {**ToyScorer.info, "db": {"file": "metadb.jsonl", "sha256": "ab" * 32, "rows": 803,
                                         "train_tasks": ["shapes", "textures"], "heldout_tasks": ["glyph-hebrew"]}}

    record = run_search(_plan(table, tmp_path / "run", "50%"), WithDb())
    md = render_markdown(record)
    assert "Learned from `metadb.jsonl`: 803 KD runs; 2 meta-training tasks (shapes, textures); 1 held-out tasks " \
           "(glyph-hebrew); sha256 abababababab…" in md
    assert "{'" not in md


def test_budget_object_passes_through(table, tmp_path):
    plan = _plan(table, tmp_path / "run", Budget(0.5, True, "2x"))
    assert plan.budget_ms == pytest.approx(0.5 * plan.teacher_cost["latency_ms"])

"""Short-KD refinement of the search's finalists (``search --refine M --refine-epochs E``).

The refinement's premise is that a run stopped after E epochs is the full run's state at that epoch (same
seed, same learning-rate schedule), so the meta-database's stored validation curves simulate it exactly
(``benchmarks/bench_refine.py``). These tests check that premise, how finalists are chosen and ordered, the
bad-input errors, one real refinement inside a search (the demo teacher on a tiny image folder), that a
refinement killed midway resumes without training a finalist twice, and that finalists share one teacher-output
cache without changing their accuracy.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import run_cli
from PIL import Image

from dass_edge.data import load_task
from dass_edge.errors import DassEdgeError
from dass_edge.latency import default_teacher_spec, load_table
from dass_edge.search.plan import prepare_search
from dass_edge.search.refine import check_refine, pick_finalists, refine_order, short_kd
from dass_edge.search.run import run_search
from dass_edge.space import Arch, parse_arch
from dass_edge.training.distill import KDConfig, distill
from dass_edge.training.loop import Recipe
from tests.test_distill import STUDENT, tiny_teacher
from tests.test_search_run import ToyScorer

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def empty_user_tables(tmp_path, monkeypatch):
    monkeypatch.setenv("DASS_EDGE_TABLES", str(tmp_path / "user-tables"))
    monkeypatch.setenv("DASS_EDGE_CACHE", str(tmp_path / "cache"))  # no short-KD result kept by an earlier run


def test_a_run_stopped_early_is_the_full_runs_prefix():
    data = load_task("count-dots", resolution=8)
    teacher = tiny_teacher(data)
    config = KDConfig(recipe=Recipe(epochs=3, batch_size=64, lr=0.01, weight_decay=3e-5, seed=1))
    full = distill(teacher, STUDENT, data, config)
    short = distill(teacher, STUDENT, data, config, stop_after=2)
    assert [h["epoch"] for h in short.history] == [1, 2]
    assert [h["val_acc"] for h in short.history] == [h["val_acc"] for h in full.history[:2]]
    assert short.history[1]["loss"] == pytest.approx(full.history[1]["loss"], rel=1e-6)
    with pytest.raises(DassEdgeError, match="stop_after must be an epoch from 1 to 3"):
        distill(teacher, STUDENT, data, config, stop_after=4)


def _arch(depths, width):
    return Arch(tuple(depths), tuple((width,) * d for d in depths))


def test_finalists_are_one_per_depth_pattern_best_first():
    archs = [_arch((1, 1, 2, 1), 16), _arch((1, 1, 2, 1), 8), _arch((1, 2, 1, 1), 16), _arch((2, 1, 1, 1), 8),
             _arch((1, 2, 1, 1), 8)]
    scores = [9.0, 8.5, 7.0, 6.0, 8.0]
    assert pick_finalists(archs, scores, 2) == [0, 4]  # 1-1-2-1's best, then 1-2-1-1's best
    assert pick_finalists(archs, scores, 3) == [0, 4, 3]
    assert pick_finalists(archs, scores, 5) == [0, 4, 3, 1, 2]  # 3 patterns: the rest filled by score
    assert pick_finalists(archs, scores, 0) == []


def test_half_the_finalists_come_from_the_hedge_on_other_depth_patterns():
    archs = [_arch((1, 1, 2, 1), 16), _arch((1, 1, 2, 1), 8), _arch((1, 2, 1, 1), 16), _arch((2, 1, 1, 1), 8),
             _arch((1, 2, 1, 1), 8), _arch((2, 2, 2, 1), 8)]
    scores = [9.0, 8.5, 7.0, 6.0, 8.0, 1.0]
    flops = [5.0, 4.0, 3.0, 2.0, 1.0, 6.0]
    assert pick_finalists(archs, scores, 4, hedge=flops) == [0, 4, 5, 3]  # 2 by score, then 2 by FLOPs
    assert pick_finalists(archs, scores, 3, hedge=flops) == [0, 4, 5]  # odd: the predictor gets the extra one
    assert pick_finalists(archs, scores, 2, hedge=scores) == [0, 4]  # a hedge equal to the score adds nothing new


def test_refine_order_prefers_early_accuracy_then_the_predictor():
    assert list(refine_order([60.0, 62.5, 62.5, 10.0], [4.0, 1.0, 3.0, 9.0])) == [2, 1, 0, 3]


@pytest.mark.parametrize("finalists, epochs, message", [
    (-1, 3, "--refine must be 0"), (4, 0, "--refine-epochs must be from 1 to 10"),
    (4, 11, "--refine-epochs must be from 1 to 10"), (2.5, 3, "--refine must be an integer"),
])
def test_bad_refine_settings(finalists, epochs, message):
    with pytest.raises(DassEdgeError, match=message):
        check_refine(finalists, epochs)


@pytest.mark.parametrize("args, message", [
    (["--refine", "-2"], "--refine must be 0"), (["--refine-epochs", "11"], "--refine-epochs must be from 1 to 10"),
    (["--train-device", "tpu"], "unknown device 'tpu'"),
])
def test_bad_refine_flags_are_one_line_and_write_nothing(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(["search", "--latency-ms", "50%", "--out", "run", *args], capsys)
    assert code == 2 and err.startswith("error:") and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "run").exists()


def _image_folder(root, classes=26, per_class=6, side=32):
    """As many classes as the demo teacher (26): a bright patch whose place and colour encode the class."""
    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(per_class):
            img = rng.integers(0, 60, (side, side, 3)).astype(np.uint8)
            img[(c % 6) * 5:(c % 6) * 5 + 5, (c // 6) * 6:(c // 6) * 6 + 6, c % 3] = 240
            Image.fromarray(img).save(root / f"c{c}" / f"{i}.png")
    return root


def test_search_refines_its_finalists_with_real_short_kd(tmp_path):
    table = load_table("cpu", 32, default_teacher_spec(), this_machine=False)
    data_dir = _image_folder(tmp_path / "images")
    plan = prepare_search(0.35, table=table, data_dir=data_dir, out=tmp_path / "run", budget_evals=120, top_k=3,
                          refine=2, refine_epochs=1)
    record = run_search(plan, ToyScorer())
    ref = record["refine"]
    assert ref["finalists"] == 2 and ref["epochs"] == 1 and ref["device"] == "cpu"
    got = {s["arch_key"]: s["val_acc"] for s in ref["students"]}
    assert len(got) == 2 and all(0.0 <= v <= 100.0 for v in got.values())
    depths = {parse_arch(k).depths for k in got}
    assert len(depths) == 2  # one per depth pattern
    assert [x["chosen_by"] for x in ref["students"]] == ["predictor", "flops"]
    # FLOPs' finalist: the largest student by FLOPs of another depth pattern, among everything scored (the
    # FLOPs-guided run's students included)
    with open(tmp_path / "run" / "candidates.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == record["evaluated"] and any("guided by FLOPs" in n for n in record["notes"])
    first = parse_arch(ref["students"][0]["arch_key"]).depths
    others = [r for r in rows if parse_arch(r["arch_key"]).depths != first]
    assert ref["students"][1]["flops"] == max(int(r["flops"]) for r in others)
    # rank 1 and 2 are the finalists, best short-KD accuracy first (ties: the predictor's order)
    top_keys = [p["arch_key"] for p in record["top"][:2]]
    assert set(top_keys) == set(got)
    assert got[top_keys[0]] >= got[top_keys[1]]
    assert record["top"][0]["refine_val_acc"] == got[top_keys[0]]
    assert len(record["top"]) == 3 and "refine_val_acc" not in record["top"][2]
    assert any(n.startswith("rank 1 was chosen by short-KD refinement") for n in record["notes"])
    saved = json.loads((tmp_path / "run" / "search.json").read_text())
    assert saved["refine"] == ref and saved["inputs"]["refine"] == 2 and ref["reused"] == 0

    # the same search again: the finalists' short runs are read back, not trained again, with the same result
    plan = prepare_search(0.35, table=table, data_dir=data_dir, out=tmp_path / "run", budget_evals=120, top_k=3,
                          refine=2, refine_epochs=1, replace=True)
    again = run_search(plan, ToyScorer())
    assert again["refine"]["reused"] == 2 and all(s["reused"] for s in again["refine"]["students"])
    assert [p["arch_key"] for p in again["top"]] == [p["arch_key"] for p in record["top"]]
    assert any("2 of them read back from an interrupted or identical earlier run" in n for n in again["notes"])


def test_short_kd_reports_each_finalists_accuracy_after_its_epochs():
    data = load_task("count-dots", resolution=8)
    teacher = tiny_teacher(data)
    seen = []
    runs = short_kd(teacher, data, [STUDENT, Arch((1, 1, 1, 1), ((8,), (16,), (16,), (32,)))], epochs=1,
                    progress=lambda done, total: seen.append((done, total)))
    assert [r.epochs for r in runs] == [1, 1] and all(np.isfinite(r.val_acc) for r in runs)
    assert seen[0] == (0, 2) and seen[-1] == (2, 2)
    assert torch.get_num_threads() == 1


def test_short_kd_survives_an_interruption_and_trains_nothing_twice(tmp_path, monkeypatch):
    import dass_edge.training.distill as distill_module

    data = load_task("count-dots", resolution=8)
    teacher = tiny_teacher(data)
    other = Arch((1, 1, 1, 1), ((8,), (16,), (16,), (32,)))
    work = tmp_path / "work"
    first = short_kd(teacher, data, [STUDENT, other], epochs=2, work_dir=work, teacher_sha256="ab" * 32)
    kept = sorted(work.glob("*.json"))
    assert len(kept) == 2 and not list(work.glob("*.resume.pt"))  # finished runs leave no resume state

    real, calls = distill_module.distill, []

    def counting(*args, **kwargs):
        calls.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(distill_module, "distill", counting)
    again = short_kd(teacher, data, [STUDENT, other], epochs=2, work_dir=work, teacher_sha256="ab" * 32)
    assert calls == [] and [r.val_acc for r in again] == [r.val_acc for r in first] and all(r.reused for r in again)

    # killed after the first finalist: its result is kept, only the second trains again, to the same accuracy
    by_arch = {json.loads(p.read_text())["arch_key"]: p for p in kept}
    by_arch[other.key()].unlink()
    resumed = short_kd(teacher, data, [STUDENT, other], epochs=2, work_dir=work, teacher_sha256="ab" * 32)
    assert calls == [other] and by_arch[other.key()].exists()
    assert [r.val_acc for r in resumed] == [r.val_acc for r in first]

    # a file that is not this run's result (corrupt, or another run's key) is never read as it
    kept[0].write_text("{not json")
    kept[1].write_text(json.dumps({"key": "elsewhere", "val_acc": 99.0, "seconds": 1.0}))
    calls.clear()
    redone = short_kd(teacher, data, [STUDENT, other], epochs=2, work_dir=work, teacher_sha256="ab" * 32)
    assert len(calls) == 2 and [r.val_acc for r in redone] == [r.val_acc for r in first]
    calls.clear()
    short_kd(teacher, data, [STUDENT], epochs=2, seed=3, work_dir=work, teacher_sha256="ab" * 32)
    assert len(calls) == 1  # another seed is another run
    calls.clear()
    short_kd(teacher, data, [STUDENT], epochs=2, work_dir=tmp_path / "none")  # no teacher checksum: nothing kept
    assert len(calls) == 1 and not list((tmp_path / "none").iterdir())
    (tmp_path / "a-file").write_text("")
    calls.clear()
    blocked = short_kd(teacher, data, [STUDENT], epochs=2, work_dir=tmp_path / "a-file" / "refine",
                       teacher_sha256="ab" * 32, cache_dir=tmp_path / "a-file" / "cache")  # cannot be created
    assert len(calls) == 1 and blocked[0].val_acc == first[0].val_acc  # the search goes on without them


def test_report_and_table_show_the_short_kd_accuracy(tmp_path):
    from dass_edge.search.report import render_markdown

    table = load_table("cpu", 32, default_teacher_spec(), this_machine=False)
    plan = prepare_search(0.35, table=table, data_dir=_image_folder(tmp_path / "images"), out=tmp_path / "run",
                          budget_evals=60, top_k=2, refine=1, refine_epochs=1)
    record = run_search(plan, ToyScorer())
    text = render_markdown(record)
    first = next(line for line in text.splitlines() if line.startswith("| 1 |"))
    assert first.endswith(f" {record['top'][0]['refine_val_acc']:.1f} |")
    second = next(line for line in text.splitlines() if line.startswith("| 2 |"))
    assert second.endswith(" - |") and "Short-KD refinement: 1 finalist (one per depth pattern" in text


def test_finalists_say_who_chose_them():
    from dass_edge.search.refine import finalists_with_source

    archs = [_arch((1, 1, 2, 1), 16), _arch((1, 1, 2, 1), 8), _arch((1, 2, 1, 1), 16)]
    got = finalists_with_source(archs, [9.0, 8.0, 7.0], 3, hedge=[1.0, 2.0, 3.0])
    assert got == [(0, "score"), (2, "score"), (1, "fill")]  # 2 patterns only: the FLOPs half finds none new
    assert finalists_with_source(archs, [9.0, 8.0, 1.0], 2, hedge=[1.0, 2.0, 3.0]) == [(0, "score"), (2, "hedge")]


def test_finalists_from_several_sources_take_turns_on_new_depth_patterns():
    from dass_edge.search.refine import finalists_from

    archs = [_arch((1, 1, 2, 1), 16), _arch((1, 1, 2, 1), 8), _arch((1, 2, 1, 1), 16), _arch((2, 1, 1, 1), 8),
             _arch((1, 2, 1, 1), 8), _arch((2, 2, 2, 1), 8)]
    dass = [9.0, 8.5, 7.0, 6.0, 8.0, 1.0]
    flops = [5.0, 4.0, 3.0, 2.0, 1.0, 6.0]
    ridge = [9.9, 0.0, 0.0, 5.0, 0.0, 9.0]  # its two best patterns are taken; its next one is 2-1-1-1
    got = finalists_from(archs, [("dass", dass, 2), ("flops", flops, 1), ("ridge", ridge, 1)])
    assert got == [(0, "dass"), (4, "dass"), (5, "flops"), (3, "ridge")]
    got = finalists_from(archs[:3], [("dass", dass[:3], 1), ("ridge", ridge[:3], 2)])  # 2 patterns for 3 slots
    assert got == [(0, "dass"), (2, "ridge"), (1, "fill")]


@pytest.mark.slow
def test_a_search_killed_during_refinement_resumes_it(tmp_path):
    """SIGKILL a real ``dass-edge search`` once its first finalist's short run is kept: nothing of the run
    folder is left, and the rerun reads that finalist back and distills only the other."""
    data_dir = _image_folder(tmp_path / "images", per_class=40)
    env = {**os.environ, "DASS_EDGE_TABLES": str(tmp_path / "user-tables"), "DASS_EDGE_CACHE": str(tmp_path / "cache"),
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "dass_edge.cli", "search", "--latency-ms", "50%", "--data", str(data_dir),
           "--budget-evals", "100", "--top-k", "2", "--refine", "2", "--refine-epochs", "3", "--out",
           str(tmp_path / "run"), "--json"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kept, deadline = [], time.time() + 300
    while time.time() < deadline and proc.poll() is None and not kept:
        kept = list((tmp_path / "cache" / "refine").glob("*.json"))
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(kept) == 1, "killed too late or the refinement never started"
    assert not (tmp_path / "run").exists()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    refine = json.loads(out.stdout)["refine"]
    assert refine["reused"] == 1 and [s["reused"] for s in refine["students"]].count(True) == 1
    assert len(list((tmp_path / "cache" / "refine").glob("*.json"))) == 2


def test_finalists_share_one_teacher_output_cache_of_their_epochs(tmp_path):
    data = load_task("count-dots", resolution=8)
    teacher = tiny_teacher(data)
    archs = [STUDENT, Arch((1, 1, 1, 1), ((8,), (16,), (16,), (32,)))]
    live = short_kd(teacher, data, archs, epochs=2)
    cached = short_kd(teacher, data, archs, epochs=2, teacher_sha256="cd" * 32, cache_dir=tmp_path)
    assert [r.val_acc for r in cached] == [r.val_acc for r in live]  # the same stream, the same answers
    files = list((tmp_path / "teacher_logits").glob("*.pt"))
    assert len(files) == 1  # built once, for both finalists
    assert torch.load(files[0], weights_only=True)["logits"].shape[0] == 2  # the short runs' epochs, not all 10

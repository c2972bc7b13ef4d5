"""``search --support``: students of the user's task already distilled adapt the hybrid predictor (K-shot)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import run_cli
from scipy.stats import spearmanr

from dass_edge.errors import DassEdgeError
from dass_edge.latency import default_teacher_spec, load_table
from dass_edge.predictor.support import check_support, read_support
from dass_edge.search.plan import prepare_search
from dass_edge.search.run import run_search
from dass_edge.space import Arch

pytestmark = pytest.mark.usefixtures("one_thread")


def _write_log(folder, arch: Arch, val_acc, sha="t" * 64, task="glyph-latin-upper", data_dir=None, epochs=30):
    """A distill log as ``dass-edge distill`` writes it (the fields support reads)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "distill.json").write_text(json.dumps({"arch": arch.to_dict(), "val_acc": val_acc, "teacher_sha256": sha,
                                                     "task": task, "data_dir": data_dir,
                                                     "recipe": {"alpha": 0.5, "recipe": {"epochs": epochs}}}))
    return folder


def _archs(n: int, seed: int = 0) -> list[Arch]:
    from dass_edge.space import SearchSpace

    return SearchSpace(default_teacher_spec()).sample_many(n, seed=seed)


def test_read_support_takes_distill_and_search_run_folders_and_merges_repeats(tmp_path):
    a, b, c = _archs(3)
    one = _write_log(tmp_path / "one", a, 80.0)
    run = tmp_path / "run"
    _write_log(run / "rank1", b, 70.0)
    _write_log(run / "rank2", c, 60.0)
    again = _write_log(tmp_path / "again", a, 84.0)  # the same student distilled twice: its mean
    got = {s.arch: s.val_acc for s in read_support([one, run, again])}
    assert got == {a: 82.0, b: 70.0, c: 60.0}


@pytest.mark.parametrize("content, message", [
    (None, "no such folder"),
    ("", "no distill.json there or in its rank*/ folders"),
    ("{not json", "is not a readable distill log"),
    ('{"arch": {"depths": [1]}, "val_acc": 50}', "is not a readable distill log"),
    ("VALID:NaN", "not a percentage"),
    ("VALID:140", "not a percentage"),
])
def test_unreadable_support_is_one_clear_error(tmp_path, content, message):
    folder = tmp_path / "s"
    if content is not None:
        folder.mkdir()
        if content.startswith("VALID:"):
            (folder / "distill.json").write_text(json.dumps({"arch": _archs(1)[0].to_dict(),
                                                             "val_acc": float(content[6:])}))
        elif content:
            (folder / "distill.json").write_text(content)
    with pytest.raises(DassEdgeError, match=message.replace("*", r"\*")):
        read_support([folder])


def test_check_support_refuses_another_teacher_another_task_and_too_few(tmp_path):
    a, b = _archs(2)
    mine = read_support([_write_log(tmp_path / "a", a, 80.0), _write_log(tmp_path / "b", b, 70.0)])
    check_support(mine, "t" * 64, "glyph-latin-upper", None)  # the same teacher and task: fine
    with pytest.raises(DassEdgeError, match="another teacher"):
        check_support(mine, "u" * 64, "glyph-latin-upper", None)
    with pytest.raises(DassEdgeError, match="distilled on task glyph-latin-upper, but this search is on task shapes"):
        check_support(mine, "t" * 64, "shapes", None)
    with pytest.raises(DassEdgeError, match="but this search is on /data"):
        check_support(mine, "t" * 64, None, "/data")
    with pytest.raises(DassEdgeError, match="2 or more"):
        check_support(mine[:1], "t" * 64, "glyph-latin-upper", None)
    smoke = read_support([_write_log(tmp_path / "c", _archs(3)[2], 40.0, epochs=1)])
    with pytest.raises(DassEdgeError, match=r"different recipes \(epochs 1, 30\)"):
        check_support(mine + smoke, "t" * 64, "glyph-latin-upper", None)


@pytest.fixture(scope="module")
def plan(tmp_path_factory):
    table = load_table("cpu", 32, default_teacher_spec(), this_machine=False)
    return prepare_search(0.35, table=table, out=tmp_path_factory.mktemp("s") / "run", budget_evals=150, top_k=2)


def test_support_moves_the_shipped_predictor_toward_the_users_students(plan, tmp_path):
    """Support labels that reverse the predictor's own order pull its order on those students toward them,
    and the search records what it adapted to."""
    from dass_edge.predictor.search_scorers import load_search_scorer

    archs = _archs(10, seed=3)
    plain = load_search_scorer(None, plan.teacher, plan.data, teacher_meta=plan.teacher_meta)
    before = np.asarray(plain(archs))
    labels = 60.0 + 3.0 * np.argsort(np.argsort(-before))  # the predicted best gets the lowest accuracy
    folders = [_write_log(tmp_path / f"s{i}", a, float(y), sha=plan.teacher_sha256, task=plan.task)
               for i, (a, y) in enumerate(zip(archs, labels))]
    support = read_support(folders)
    check_support(support, plan.teacher_sha256, plan.task, plan.data_dir)
    adapted = load_search_scorer(None, plan.teacher, plan.data, teacher_meta=plan.teacher_meta, support=support)
    after = np.asarray(adapted(archs))
    rho_before, rho_after = spearmanr(before, labels)[0], spearmanr(after, labels)[0]
    assert rho_before == pytest.approx(-1.0) and rho_after > rho_before + 0.5, (rho_before, rho_after)
    assert np.all(np.isfinite(after)) and np.all((after > 0) & (after < 100))
    assert adapted.info["support"]["students"] == 10 and "support" not in plain.info
    # Both stay anchored on the teacher: its own shape reads as the teacher's accuracy, adapted or not.
    from dass_edge.predictor.scoring import teacher_arch

    t = [teacher_arch(plan.teacher)]
    assert float(adapted(t)[0]) == pytest.approx(float(plain(t)[0]), abs=1e-6)

    record = run_search(plan, adapted)
    assert record["predictor"]["support"]["students"] == 10
    assert any("adapted to 10 students of this task you distilled" in n for n in record["notes"])


def test_support_with_a_baseline_or_a_missing_folder_fails_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DASS_EDGE_TABLES", str(tmp_path / "tables"))
    monkeypatch.chdir(tmp_path)
    folder = _write_log(tmp_path / "s", _archs(1)[0], 70.0)
    for args, message in ((["--predictor", "flops", "--support", str(folder)], "baseline flops has nothing to adapt"),
                          (["--support", str(tmp_path / "missing")], "no such folder")):
        code, out, err = run_cli(["search", "--latency-ms", "0.3", *args], capsys)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and message in lines[0], err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "tables").exists()

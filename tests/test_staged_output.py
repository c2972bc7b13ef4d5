"""``dass_edge.io.StagedOutput``: the one all-or-nothing writer of run folders, replacing one included."""

import os

import pytest

from dass_edge.errors import DassEdgeError
from dass_edge.io import StagedOutput


def _old_run(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "old.txt").write_text("old")
    return out


def _leftovers(tmp_path):
    return sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("."))


def test_commit_folder_replaces_a_full_folder_and_leaves_no_holder(tmp_path):
    out = _old_run(tmp_path)
    seen = []
    with StagedOutput(out, whole=True) as staged:
        staged.path("new.txt").write_text("new")
        staged.commit_folder(replace=seen.append)
    assert seen == [out]
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"] and (out / "new.txt").read_text() == "new"
    assert _leftovers(tmp_path) == []


def test_without_replace_a_full_folder_is_refused(tmp_path):
    out = _old_run(tmp_path)
    with pytest.raises(DassEdgeError, match="cannot write the output folder"):
        with StagedOutput(out, whole=True) as staged:
            staged.path("new.txt").write_text("new")
            staged.commit_folder()
    assert sorted(p.name for p in out.iterdir()) == ["old.txt"] and _leftovers(tmp_path) == []


def test_replace_callback_refuses_before_anything_moves(tmp_path):
    out = _old_run(tmp_path)

    def refuse(path):
        raise DassEdgeError(f"{path.name} is not mine")

    with pytest.raises(DassEdgeError, match="run is not mine"):
        with StagedOutput(out, whole=True) as staged:
            staged.path("new.txt").write_text("new")
            staged.commit_folder(replace=refuse)
    assert (out / "old.txt").read_text() == "old" and _leftovers(tmp_path) == []


def test_a_failed_rename_puts_the_replaced_folder_back(tmp_path, monkeypatch):
    out = _old_run(tmp_path)
    real_rename = os.rename

    def rename(src, dst):
        if ".staging-" in os.fspath(src):
            raise OSError(28, "No space left on device")
        return real_rename(src, dst)

    monkeypatch.setattr("dass_edge.io.os.rename", rename)
    with pytest.raises(DassEdgeError, match="No space left on device"):
        with StagedOutput(out, whole=True) as staged:
            staged.path("new.txt").write_text("new")
            staged.commit_folder(replace=lambda _path: None)
    assert sorted(p.name for p in out.iterdir()) == ["old.txt"] and _leftovers(tmp_path) == []

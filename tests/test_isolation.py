"""Tests never read the user's own folders, whatever ran before them (the README's order: the main job
saves this machine's latency table in the user data folder, then the tests run).

A hostile user table store (this machine's CPU, every latency tripled, newer than the shipped table,
plus a malformed file) is put everywhere a user's tables can live: ``$DASS_EDGE_TABLES``, the
platform data dir under ``$XDG_DATA_HOME`` and under ``$HOME``. The table-sensitive tests then run in a
fresh pytest process and must pass as they do on a clean machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dass_edge.latency import default_teacher_spec, load_table
from dass_edge.latency.profiles import resolve_device
from dass_edge.latency.store import this_machine_label
from dass_edge.resources import tables_dir

ROOT = Path(__file__).resolve().parent.parent
TABLE_SENSITIVE = ["tests/test_search_run.py", "tests/test_search_cli.py", "tests/test_search_budget.py"]


def _hostile_store(folder: Path) -> Path:
    """The shipped CPU table re-labelled as measured on this machine (so ``cpu`` takes it), three times
    slower and dated later (so it wins over the shipped one), beside a malformed table file."""
    shipped = next(p for p in sorted(tables_dir().glob("cpu_*.json")))
    doc = json.loads(shipped.read_text())
    doc["provenance"]["measured_on"] = this_machine_label(resolve_device("cpu"))
    doc["provenance"]["date"] = "2099-01-01T00:00:00+00:00"
    for entry in doc["entries"].values():
        for key in [k for k in entry if k.endswith("_ms")]:
            entry[key] *= 3
    for key in [k for k in doc["overhead"] if k.endswith("_ms")]:
        doc["overhead"][key] *= 3
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"cpu_hostile_{shipped.name}").write_text(json.dumps(doc))
    (folder / "cpu_broken.json").write_text("{not json")
    return folder


def _hostile_env(tmp_path: Path) -> dict:
    env = dict(os.environ)
    home, data = tmp_path / "home", tmp_path / "xdg-data"
    env.update(HOME=str(home), XDG_DATA_HOME=str(data), DASS_EDGE_TABLES=str(tmp_path / "tables"),
               PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])]))
    for folder in (tmp_path / "tables", data / "dass-edge" / "latency_tables",
                   home / ".local" / "share" / "dass-edge" / "latency_tables"):
        _hostile_store(folder)
    return env


def test_the_hostile_store_would_change_what_tests_see(tmp_path, monkeypatch):
    """Without isolation, the store is read: its malformed file fails loading, and its table would win."""
    env = _hostile_env(tmp_path)
    monkeypatch.setenv("DASS_EDGE_TABLES", env["DASS_EDGE_TABLES"])
    with pytest.raises(Exception, match="cpu_broken.json"):
        load_table("cpu", 32, default_teacher_spec(), this_machine=False)
    (Path(env["DASS_EDGE_TABLES"]) / "cpu_broken.json").unlink()
    hostile = load_table("cpu", 32, default_teacher_spec(), this_machine=False)
    shipped = json.loads(sorted(tables_dir().glob("cpu_*.json"))[0].read_text())
    some = next(iter(shipped["entries"]))
    assert hostile.path is not None and "hostile" in str(hostile.path)
    assert hostile.entries[some]["p50_ms"] == pytest.approx(3 * shipped["entries"][some]["p50_ms"])


def test_conftest_points_every_user_folder_away(tmp_path):
    """In this session, the user folders are the session's own, not the ones set outside."""
    from dass_edge.data.builtin import cache_dir
    from dass_edge.latency.profiles import user_profiles_dir
    from dass_edge.latency.store import user_tables_dir

    home = Path.home()
    for folder in (user_tables_dir(), user_profiles_dir(), cache_dir()):
        assert home not in folder.resolve().parents or ROOT in folder.resolve().parents, folder
    assert "dass-edge-tests-" in str(user_tables_dir()) and "dass-edge-tests-" in str(user_profiles_dir())


@pytest.mark.slow
def test_table_sensitive_tests_pass_with_a_hostile_user_store(tmp_path):
    env = _hostile_env(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *TABLE_SENSITIVE],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    tail = (proc.stdout + proc.stderr)[-3000:]
    assert proc.returncode == 0, tail
    assert " passed" in proc.stdout and " failed" not in proc.stdout, tail

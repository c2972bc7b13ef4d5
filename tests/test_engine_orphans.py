"""A ``kill -9`` of a job runner takes its pool workers with it (no orphan keeps training for nobody)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its new parent to reap it counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is a Linux feature")
def test_workers_die_with_a_killed_parent(tmp_path):
    (tmp_path / "orphan_jobs.py").write_text(
        "import os, time\n"
        "def sleeper(job):\n"
        "    open(job['pidfile'], 'w').write(str(os.getpid()))\n"
        "    time.sleep(120)\n"
        "    return {}\n")
    pidfile = tmp_path / "worker.pid"
    script = ("from dass_edge.metadb.engines import LocalEngine\n"
              "from orphan_jobs import sleeper\n"
              f"for _ in LocalEngine(1).run(sleeper, [{{'pidfile': {str(pidfile)!r}}}]):\n"
              "    pass\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    parent = subprocess.Popen([sys.executable, "-c", script], env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        while not pidfile.is_file() or not pidfile.read_text():
            assert parent.poll() is None and time.monotonic() < deadline, "the worker never started"
            time.sleep(0.2)
        worker = int(pidfile.read_text())
        assert _alive(worker)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
        deadline = time.monotonic() + 20
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(worker), "the pool worker outlived its killed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
        if pidfile.is_file() and pidfile.read_text() and _alive(int(pidfile.read_text())):
            os.kill(int(pidfile.read_text()), signal.SIGKILL)

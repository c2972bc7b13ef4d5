"""The CLI starts fast: ``--help``, usage errors and bad budgets import no torch, onnx or onnxruntime
(they take seconds to import; commands load them only once the arguments are checked)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "onnx", "onnxruntime", "matplotlib", "scipy")

_PROBE = """
import json, sys
from dass_edge.cli import main
code = 0
try:
    main(sys.argv[1:])
except SystemExit as e:
    code = e.code
heavy = [m for m in HEAVY if m in sys.modules]
sys.stderr.write("\\nPROBE " + json.dumps({"code": code, "heavy": heavy}) + "\\n")
""".replace("HEAVY", repr(HEAVY))


def _run(args: list[str]) -> tuple[dict, str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.run([sys.executable, "-c", _PROBE, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    head, _, probe = proc.stderr.rpartition("\nPROBE ")
    return json.loads(probe), proc.stdout, head


@pytest.mark.parametrize("args", [["--help"], ["search", "--help"], ["distill", "--help"], ["export", "--help"],
                                  ["teacher", "train", "--help"], ["profile", "--help"], ["devices", "--help"]])
def test_help_imports_nothing_heavy(args):
    probe, out, _ = _run(args)
    assert probe["code"] == 0 and "Usage" in out
    assert probe["heavy"] == []
    if args[0] in ("search", "distill", "export", "teacher"):
        assert "--threads" in out


@pytest.mark.parametrize("args, message", [
    (["search", "--latency-ms", "0"], "--latency-ms must be a positive"),
    (["search", "--latency-ms", "fast"], "--latency-ms must be milliseconds"),
    (["search", "--latency-ms", "50%", "--speedup", "2"], "not both"),
    (["search"], "no latency budget"),
    (["no-such-command"], "No such command"),
    (["distill", "--epochs", "many"], "--epochs"),
])
def test_errors_import_nothing_heavy(args, message):
    probe, out, err = _run(args)
    assert probe["code"] == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert probe["heavy"] == []

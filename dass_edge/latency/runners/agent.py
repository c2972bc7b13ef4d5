"""The self-contained measuring agent that runs on a remote device.

Shipped as a zip app (``agent.pyz``) holding this subpackage; it needs only the device's Python and
the chosen backend. Commands (JSON lines on stdout, one object per line, flushed as they happen)::

    python3 agent.pyz info BACKEND      -> {"type": "info", "device": {...}}
    python3 agent.pyz run JOB.json      -> {"type": "info", ...}, {"type": "record", ...}*, {"type": "done"}

Errors end with ``{"type": "error", "kind": ..., "message": ...}`` and exit code 3 (backend missing)
or 4 (a model failed), so the caller can say exactly what is wrong on the device.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from .base import BackendUnavailable, RunnerError
from .registry import get_backend
from .sysinfo import device_info
from .timing import run_job

__all__ = ["main"]


def _say(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _check_backend(settings: dict[str, Any]) -> None:
    module = get_backend(str(settings.get("backend"))).module  # RunnerError for an unknown one
    try:
        __import__(module)
    except ImportError as e:
        raise BackendUnavailable(f"{module} is not importable by {sys.executable} on this device ({e})") from None


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in ("info", "run"):
        _say({"type": "error", "kind": "usage", "message": "usage: agent.pyz info BACKEND | run JOB.json"})
        return 2
    try:
        if argv[0] == "info":
            settings = {"backend": argv[1]}
            _check_backend(settings)
            _say({"type": "info", "device": device_info(argv[1])})
            return 0
        with open(argv[1], encoding="utf-8") as f:
            job = json.load(f)
        base = os.path.dirname(os.path.abspath(argv[1]))
        settings = job["settings"]
        _check_backend(settings)
        _say({"type": "info", "device": device_info(settings["backend"])})
        items = [{**it, "artifact": os.path.join(base, it["artifact"])} for it in job["items"]]
        n = run_job(items, settings, lambda rec: _say({"type": "record", **rec}), seed=int(job.get("seed", 0)))
        _say({"type": "done", "records": n})
        return 0
    except BackendUnavailable as e:
        _say({"type": "error", "kind": "backend", "message": str(e)})
        return 3
    except (RunnerError, OSError, KeyError, ValueError) as e:
        _say({"type": "error", "kind": "runner", "message": f"{type(e).__name__}: {e}"})
        return 4

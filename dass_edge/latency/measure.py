"""End-to-end latency of one ONNX file with a device profile's backend and settings.

The export command uses this to measure the artifacts it writes (FP32, INT8) exactly as the
profile measures its fidelity students: fresh sessions, warm-up by time, medians over sessions.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from dass_edge.errors import DassEdgeError
from dass_edge.latency.profiles import DeviceProfile, load_profile
from dass_edge.latency.remote import SshTarget
from dass_edge.latency.runners import BackendUnavailable, RunnerError, get_backend, list_backends
from dass_edge.latency.runners.timing import run_job
from dass_edge.latency.stats import summarize_rounds

__all__ = ["measure_onnx"]


def measure_onnx(
    path: str | Path,
    profile: str | DeviceProfile,
    *,
    sessions: int | None = None,
    iterations: int | None = None,
    warmup_s: float | None = None,
    target: SshTarget | None = None,
) -> dict[str, Any]:
    """Measure ``path`` end to end (per-call overhead included: it is part of a real call).

    Args:
        path: an ONNX model (FP32, FP16 or Q/DQ INT8).
        profile: device profile name or object; its backend, threads, batch and settings are used.
        sessions, iterations, warmup_s: override the profile's measurement settings.
        target: measure on this SSH device instead of here.

    Returns:
        ``p50_ms``, ``p90_ms``, ``mean_ms``, ``std_ms``, ``count``, ``sessions``, plus ``device``,
        ``backend`` and ``threads``.

    Raises:
        DassEdgeError: missing file, a torch profile (it does not run ONNX), backend unavailable.
    """
    profile = load_profile(profile)
    path = Path(path)
    if not path.is_file():
        raise DassEdgeError(f"ONNX model {path} does not exist")
    if get_backend(profile.backend).suffix != ".onnx":
        onnx_backends = " or ".join(b.name for b in list_backends() if b.suffix == ".onnx")
        raise DassEdgeError(f"device profile {profile.name!r} uses the {profile.backend} backend, which does not "
                            f"run ONNX; measure with an {onnx_backends} profile")
    settings = profile.backend_settings()
    settings["warmup_s"] = profile.warmup_s if warmup_s is None else float(warmup_s)
    settings["iterations"] = profile.iterations if iterations is None else int(iterations)
    n = profile.sessions if sessions is None else int(sessions)
    if n < 1 or settings["iterations"] < 1:
        raise DassEdgeError("sessions and iterations must be >= 1")
    rounds: dict[int, list[float]] = defaultdict(list)
    item = {"id": "model", "path": str(path), "artifact": str(path), "input_shape": None, "rounds": list(range(n))}

    def emit(rec: dict) -> None:
        rounds[int(rec["round"])] = rec["us"]

    if target is None:
        try:
            run_job([item], settings, emit)
        except BackendUnavailable as e:
            raise DassEdgeError(f"device {profile.name!r} cannot be measured here: {e}") from None
        except RunnerError as e:
            raise DassEdgeError(f"measuring {path} failed: {e}") from None
    else:
        target.run_job(settings, [item], emit)
    if len(rounds) < n:
        raise DassEdgeError(f"measuring {path} stopped after {len(rounds)} of {n} sessions")
    out = summarize_rounds([rounds[r] for r in sorted(rounds)])
    return {**out, "device": profile.name, "backend": profile.backend, "threads": profile.threads,
            "batch": profile.batch}

"""Latency of exported artifacts, measured on the target profile's backend and predicted by its LUT.

A thin bridge to :mod:`dass_edge.latency` (the one place that owns profiles, runners, SSH and tables),
so the measured figures of an export are taken exactly the way the lookup tables were.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dass_edge.errors import DassEdgeError
from dass_edge.spec import ModelSpec

__all__ = ["Target", "load_target", "measure_artifact", "predict_latency"]

_GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")


@dataclass
class Target:
    """The device an export is made for: its profile, where it is measured, and the INT8 flavour it wants."""

    device: str
    profile: Any = None  # dass_edge.latency.DeviceProfile
    ssh: Any = None  # dass_edge.latency.SshTarget when measuring over --host
    quant_target: str = "x86"
    notes: list[str] = field(default_factory=list)

    @property
    def backend(self) -> str:
        return self.profile.backend if self.profile is not None else "onnxruntime"

    @property
    def precision(self) -> str:
        return self.profile.precision if self.profile is not None else "fp32"

    @property
    def batch(self) -> int:
        return self.profile.batch if self.profile is not None else 1

    def summary(self) -> dict:
        return {"device": self.device, "backend": self.backend, "precision": self.precision, "batch": self.batch,
                "threads": getattr(self.profile, "threads", None), "host": self.ssh.label if self.ssh else None,
                "int8_target": self.quant_target}


def _quant_target(profile, machine: str) -> str:
    """The backend's registered INT8 flavour: ``tensorrt`` (symmetric S8S8, also for GPU execution providers)
    or by the CPU architecture (x86 U8S8, Arm S8S8). A backend without INT8 gets its host's flavour."""
    from dass_edge.latency.runners import get_backend

    if get_backend(profile.backend).int8 == "tensorrt" or any(p in _GPU_PROVIDERS for p in profile.providers):
        return "tensorrt"
    return "arm" if machine.lower() in ("aarch64", "arm64", "armv8l", "armv7l") else "x86"


def load_target(device: str, host: str | None = None) -> Target:
    """Load the device profile (``cpu`` = this machine's onnxruntime CPU, 1 thread) and, with ``host``, its SSH target.

    Raises:
        DassEdgeError: unknown profile or malformed host.
    """
    from dass_edge.latency import SshTarget, load_profile
    from dass_edge.latency.runners import get_backend

    profile = load_profile(device)
    ssh = SshTarget.parse(host, python=profile.remote_python) if host else None
    machine = platform.machine()
    if ssh is not None and get_backend(profile.backend).int8 == "host":  # the device's CPU decides the flavour
        try:
            machine = ssh.run(["uname", "-m"]).strip() or machine
        except DassEdgeError as e:
            raise DassEdgeError(f"--host {host}: {e}") from None
    return Target(profile.name, profile, ssh, _quant_target(profile, machine))


def measure_artifact(path: str | Path, target: Target) -> tuple[dict | None, str | None]:
    """``({"p50_ms", "p90_ms", ...}, None)``, or ``(None, why)`` when it cannot be measured here."""
    from dass_edge.latency import measure_onnx

    try:
        return dict(measure_onnx(str(path), target.profile, target=target.ssh)), None
    except DassEdgeError as e:
        return None, str(e)


def predict_latency(target: Target, spec: ModelSpec) -> tuple[dict | None, str | None]:
    """The lookup-table prediction ``{"p50_ms", "p90_ms", ...}`` for the student, or ``(None, why)`` without a table."""
    from dass_edge.latency import load_table

    try:
        # Measured over --host: the table may come from that device, not this machine.
        table = load_table(target.device, spec.resolution, this_machine=target.ssh is None)
        return dict(table.predict(spec)), None
    except DassEdgeError as e:
        return None, str(e)

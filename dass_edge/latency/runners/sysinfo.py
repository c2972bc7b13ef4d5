"""Who measured: CPU/GPU model, cores, clocks and power mode, backend versions.

Runs wherever the measurement runs (locally or inside the remote agent), so a table records the
identity of the device that produced it, not of the machine that asked.
"""

from __future__ import annotations

import glob
import os
import platform
import re
import shutil
import subprocess
import sys
from typing import Any

__all__ = ["device_info", "jetson_model"]

_ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "amx_bf16", "asimd", "asimddp", "fphp")


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().replace("\x00", "").strip()
    except OSError:
        return None


def _run(argv: list[str], timeout: float = 5.0) -> str | None:
    if shutil.which(argv[0]) is None:
        return None
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout or "").strip() if out.returncode == 0 else None


def _cpu() -> dict[str, Any]:
    info: dict[str, Any] = {"machine": platform.machine(), "logical_cores": os.cpu_count()}
    if hasattr(os, "sched_getaffinity"):
        info["usable_cores"] = len(os.sched_getaffinity(0))
    text = _read("/proc/cpuinfo") or ""
    model = re.search(r"^(model name|Model|Hardware)\s*:\s*(.+)$", text, re.M)
    info["model"] = model.group(2).strip() if model else (platform.processor() or platform.machine())
    for field, key in (("cpu family", "family"), ("model", "model_id"), ("CPU part", "part")):
        m = re.search(rf"^{field}\s*:\s*(\S+)$", text, re.M)
        if m:
            info[key] = m.group(1)
    flags = re.search(r"^(flags|Features)\s*:\s*(.+)$", text, re.M)
    if flags:
        have = set(flags.group(2).split())
        info["isa"] = [f for f in _ISA_FLAGS if f in have]
    info["hypervisor"] = bool(flags and "hypervisor" in flags.group(2).split())
    gov = _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    max_khz = _read("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    if gov:
        info["governor"] = gov
    if max_khz and max_khz.isdigit():
        info["max_mhz"] = int(max_khz) // 1000
    return info


def jetson_model() -> str | None:
    """The Jetson module name from the device tree, or None on other machines."""
    model = _read("/proc/device-tree/model")
    return model if model and "jetson" in model.lower() else None


def _jetson() -> dict[str, Any] | None:
    model = jetson_model()
    if model is None:
        return None
    info: dict[str, Any] = {"model": model, "l4t": _read("/etc/nv_tegra_release")}
    q = _run(["nvpmodel", "-q"])
    if q:
        mode = re.search(r"NV Power Mode:\s*(.+)", q)
        info["nvpmodel"] = {"mode": mode.group(1).strip() if mode else None, "raw": q.splitlines()[-1].strip()}
    else:
        info["nvpmodel"] = None
    gpu = []
    for dev in sorted(glob.glob("/sys/class/devfreq/*")):
        if any(tag in os.path.basename(os.path.realpath(dev)) for tag in ("gpu", "gv11b", "ga10b", "gp10b")):
            gpu.append({"cur_hz": _read(os.path.join(dev, "cur_freq")), "max_hz": _read(os.path.join(dev, "max_freq"))})
    info["gpu_clocks"] = gpu or None
    show = _run(["jetson_clocks", "--show"])
    if show is None:
        info["jetson_clocks"] = "unknown (jetson_clocks --show needs root)"
    else:
        # jetson_clocks pins min == max frequency; --show prints MinFreq/MaxFreq per CPU.
        pairs = re.findall(r"MinFreq=(\d+)\s+MaxFreq=(\d+)", show)
        info["jetson_clocks"] = bool(pairs) and all(a == b for a, b in pairs)
    return info


def _gpu(backend: str) -> dict[str, Any] | None:
    smi = _run(["nvidia-smi", "--query-gpu=name,driver_version,clocks.max.sm,power.limit",
                "--format=csv,noheader"])
    if smi:
        name, *rest = [s.strip() for s in smi.splitlines()[0].split(",")]
        return {"name": name, "driver": rest[0] if rest else None, "max_sm_clock": rest[1] if len(rest) > 1 else None,
                "power_limit": rest[2] if len(rest) > 2 else None}
    if backend == "torch" and "torch" in sys.modules:
        torch = sys.modules["torch"]
        if torch.cuda.is_available():
            return {"name": torch.cuda.get_device_name(0)}
    return None


def _backend_versions(backend: str) -> dict[str, Any]:
    """Versions of the registered backends: the measuring one, those marked cheap to probe, and any whose
    module is already imported (so probing never imports torch just to report it)."""
    from .registry import list_backends

    out: dict[str, Any] = {}
    for b in list_backends():
        out[b.name] = b.version() if b.name == backend or b.probe_always or b.module in sys.modules else None
    return out


def device_info(backend: str) -> dict[str, Any]:
    """A JSON-able description of this device as the given backend sees it."""
    return {
        "cpu": _cpu(),
        "gpu": _gpu(backend),
        "jetson": _jetson(),
        "os": platform.platform(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "backends": _backend_versions(backend),
    }

"""Who measured a table: the device label and backend version read from a device record.

Shared by the profiler (which writes tables) and the table store (which picks this machine's tables),
so neither imports the other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dass_edge.latency.runners.registry import get_backend

if TYPE_CHECKING:
    from dass_edge.latency.profiles import DeviceProfile

__all__ = ["backend_version", "measured_on", "this_machine_label"]


def measured_on(info: dict[str, Any], profile: DeviceProfile) -> str:
    """The table's ``measured_on``: the Jetson module, the GPU a GPU profile runs on, or the CPU."""
    if info.get("jetson"):
        mode = (info["jetson"].get("nvpmodel") or {}).get("mode")
        return info["jetson"]["model"] + (f", nvpmodel {mode}" if mode else "")
    on_gpu = (get_backend(profile.backend).gpu or profile.device.startswith("cuda")
              or any(p != "CPUExecutionProvider" for p in profile.providers))
    if on_gpu and info.get("gpu"):
        return info["gpu"]["name"]
    cpu = info["cpu"]
    cores = cpu.get("usable_cores") or cpu.get("logical_cores")
    ident = f"family {cpu['family']} model {cpu['model_id']}, " if cpu.get("family") and cpu.get("model_id") else ""
    return f"{cpu['model']} ({ident}{cores} cores{', VM' if cpu.get('hypervisor') else ''})"


def backend_version(info: dict[str, Any], backend: str) -> str:
    """The measuring backend's version from a device record (``unknown`` where it was not reported)."""
    v = (info.get("backends") or {}).get(backend)
    if isinstance(v, dict):
        v = v.get("version")
    return str(v) if v else "unknown"


def this_machine_label(profile: DeviceProfile) -> str:
    """How a table measured with ``profile`` on this machine names the machine (its ``measured_on``)."""
    from dass_edge.latency.runners.sysinfo import device_info

    return measured_on(device_info(profile.backend), profile)

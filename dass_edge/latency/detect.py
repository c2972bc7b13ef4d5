"""``--device jetson``: find which Jetson profile a device is from its device tree and L4T release.

Users type ``--device jetson``; the profile (TensorRT version, clocks, resolutions) depends on the module.
The module name comes from ``/proc/device-tree/model`` (``NVIDIA Jetson Orin Nano Developer Kit``) and is
matched against each profile's ``detect`` substring, the longest match winning; the L4T release in
``/etc/nv_tegra_release`` (``# R36 (release), REVISION: 3.0``) names the JetPack, which breaks ties between
profiles of the same module on different JetPacks and is quoted in errors. Over ``--host`` both files are
read by the device's own Python in one SSH call (arguments quoted, no shell); locally they are read here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dass_edge.errors import DassEdgeError

if TYPE_CHECKING:
    from dass_edge.latency.profiles import DeviceProfile
    from dass_edge.latency.remote import SshTarget

__all__ = ["DEVICE_TREE_MODEL", "TEGRA_RELEASE", "DeviceIdentity", "match_jetson", "read_identity"]

DEVICE_TREE_MODEL = "/proc/device-tree/model"
TEGRA_RELEASE = "/etc/nv_tegra_release"
#: L4T major release -> JetPack major release (NVIDIA's JetPack archive).
L4T_JETPACK = {32: 4, 34: 5, 35: 5, 36: 6, 38: 7}
# Runs on the device: prints {"path": text or null} for each argument, never fails on a missing file.
_READER = """import json, sys
out = {}
for p in sys.argv[1:]:
    try:
        with open(p, 'rb') as f:
            out[p] = f.read(4096).decode('utf-8', 'replace').replace('\\x00', '').strip()
    except OSError:
        out[p] = None
print(json.dumps(out))
"""


@dataclass(frozen=True)
class DeviceIdentity:
    """What the device says it is: device-tree model and the first line of the L4T release file."""

    model: str | None
    release: str | None

    @property
    def l4t(self) -> str | None:
        """``R36.3.0`` from ``# R36 (release), REVISION: 3.0, ...``."""
        m = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", self.release or "")
        return f"R{m.group(1)}.{m.group(2)}" if m else None

    @property
    def jetpack(self) -> int | None:
        m = re.match(r"R(\d+)", self.l4t or "")
        return L4T_JETPACK.get(int(m.group(1))) if m else None

    def describe(self) -> str:
        l4t = f", L4T {self.l4t}" if self.l4t else ""
        return f"device-tree model: {self.model or 'none'}{l4t}"


def _read_local(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read(4096).decode("utf-8", "replace").replace("\x00", "").strip() or None
    except OSError:
        return None


def read_identity(target: SshTarget | None = None, local_model: Callable[[], str | None] | None = None
                  ) -> DeviceIdentity:
    """Read the model and L4T release of ``target`` over SSH, or of this machine.

    Raises:
        DassEdgeError: the device cannot be reached or its Python does not run (one line, from ssh).
    """
    if target is None:
        model = local_model() if local_model is not None else _read_local(DEVICE_TREE_MODEL)
        release = (_read_local(TEGRA_RELEASE) or "").splitlines()
        return DeviceIdentity(model, release[0] if release else None)
    out = target.run([target.python, "-c", _READER, DEVICE_TREE_MODEL, TEGRA_RELEASE])
    try:
        got = json.loads(out.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        raise DassEdgeError(f"{target.label}: could not read the device model (got {out.strip()[:80]!r})") from None
    release = (got.get(TEGRA_RELEASE) or "").splitlines()
    return DeviceIdentity(got.get(DEVICE_TREE_MODEL) or None, release[0] if release else None)


def _jetpack_of(profile: DeviceProfile) -> int | None:
    m = re.search(r"JetPack (\d+)", profile.description)
    return int(m.group(1)) if m else None


def match_jetson(identity: DeviceIdentity, profiles: Sequence[DeviceProfile], where: str,
                 remote: bool) -> DeviceProfile:
    """The profile whose ``detect`` substring matches the model (longest first, then the device's JetPack).

    Raises:
        DassEdgeError: not a Jetson (locally: says the command needs the device or ``--host``), or no
            profile matches (lists the Jetson profiles).
    """
    jetsons = [p for p in profiles if p.detect]
    names = ", ".join(p.name for p in jetsons) or "none"
    model = identity.model or ""
    if "jetson" not in model.lower() and identity.release is None:
        hint = ("name a profile instead" if remote else
                "it needs the device: run this on the Jetson, or pass --host user@jetson to measure it over SSH, "
                "or name a profile")
        raise DassEdgeError(f"--device jetson: {where} is not a Jetson ({identity.describe()}); {hint}: {names}")
    found = [p for p in jetsons if p.detect.lower() in model.lower()]
    if not found:
        raise DassEdgeError(f"no device profile matches {model!r} on {where}"
                            f"{' (L4T ' + identity.l4t + ')' if identity.l4t else ''} (Jetson profiles: {names}); "
                            "copy the closest one, set its detect: field and pass --device path/to/profile.yaml")
    longest = max(len(p.detect) for p in found)
    found = [p for p in found if len(p.detect) == longest]
    same_jetpack = [p for p in found if identity.jetpack is not None and _jetpack_of(p) == identity.jetpack]
    return (same_jetpack or found)[0]

"""Device profiles: which backend, precision, batch, threads and measurement settings a device uses.

Profiles are YAML files: shipped ones in ``profiles/`` (installed as ``dass_edge.profiles``), the
user's own in ``$DASS_EDGE_PROFILES`` or the platform config dir (same name overrides a shipped
one), or any file passed as ``--device path/to/profile.yaml``. Every file is schema-checked on load
(plain code, no extra dependency) so a typo is a one-line error, not a silent default.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from dass_edge.errors import DassEdgeError
from dass_edge.latency.graphs import PRECISIONS
from dass_edge.latency.runners import backend_names, get_backend
from dass_edge.latency.runners.sysinfo import jetson_model
from dass_edge.resources import profiles_dir

if TYPE_CHECKING:
    from dass_edge.latency.remote import SshTarget

__all__ = ["CLOCK_ITEMS", "DeviceProfile", "list_profiles", "load_profile", "resolve_device", "user_profiles_dir"]

#: What a profile can ask to be recorded about clocks; "required" ones must be readable on the device.
CLOCK_ITEMS = ("nvpmodel", "jetson_clocks", "cpu_governor", "gpu_clocks")
_CLOCK_POLICIES = ("required", "recorded")
_MEASUREMENT_KEYS = {"warmup_s": float, "iterations": int, "sessions": int, "fidelity_students": int,
                     "fidelity_sessions": int, "nice": int, "pin_core": bool}
#: ``fidelity_target:`` keys -> (DeviceProfile field, lowest, highest).
_TARGET_KEYS = {"within_10pct": ("target_within_10pct", 0.0, 1.0), "spearman": ("target_spearman", -1.0, 1.0),
                "remeasure_s": ("remeasure_s", 0.0, 3600.0)}


@dataclass(frozen=True)
class DeviceProfile:
    """One target device as dass-edge measures it.

    Args:
        name: the ``--device`` name.
        description: one line for ``dass-edge devices``.
        backend: a registered backend (``onnxruntime``, ``torch``, ``tensorrt``, ...).
        precision: ``fp32``, ``fp16`` or ``int8`` (Q/DQ models).
        batch, threads: batch size and intra-op threads, pinned during measurement.
        resolutions: input sides this profile may be measured at.
        providers: onnxruntime execution providers, in priority order.
        device: torch device (``cpu``/``cuda``).
        cuda_graph: torch on CUDA: time CUDA-graph replays.
        workspace_mb: TensorRT builder workspace.
        warmup_s, iterations, sessions: warm-up time per fresh session, timed calls per session, fresh
            sessions (rounds) per model.
        fidelity_students: random students measured end to end to validate and correct the table.
        fidelity_sessions: rounds per student (and for the overhead model): their medians are the
            targets the table is judged against, so they get more rounds than the blocks.
        nice: scheduling priority while measuring (e.g. -10); applied only where permitted, and recorded.
        pin_core: pin the measuring process to one core while it times (Linux ``sched_setaffinity``), so a
            call is not migrated between cores mid-measurement; recorded.
        target_within_10pct, target_spearman: the fidelity a table must reach (``fidelity_target:`` in YAML);
            below it, up to ``remeasure_s`` seconds go to re-measuring what was disturbed, and a table still
            below is saved marked ``fidelity_ok: false`` (see :mod:`dass_edge.latency.gate`).
        clocks: what must be recorded about clocks, ``{item: "required" | "recorded"}``.
        detect: substring of the Jetson model name (``/proc/device-tree/model``) for ``--device jetson``.
        remote_python: interpreter the agent uses over ``--host``.
        backend_version: the backend release the device ships (e.g. ``"8.5"``: TensorRT on JetPack 5), for
            what must be known before anything runs there (the engine build commands an export prints);
            empty when any release will do. The version that measured a table is recorded from the device.
        source: the file the profile came from.
    """

    name: str
    description: str
    backend: str
    precision: str
    batch: int
    threads: int
    resolutions: tuple[int, ...]
    providers: tuple[str, ...] = ()
    device: str = "cpu"
    cuda_graph: bool = False
    workspace_mb: int = 1024
    warmup_s: float = 0.02
    iterations: int = 40
    sessions: int = 5
    fidelity_students: int = 30
    fidelity_sessions: int = 15
    nice: int | None = None
    pin_core: bool = False
    target_within_10pct: float = 0.90
    target_spearman: float = 0.95
    remeasure_s: float = 60.0
    clocks: dict[str, str] = field(default_factory=dict)
    detect: str = ""
    remote_python: str = "python3"
    backend_version: str = ""
    source: str = ""

    def backend_settings(self) -> dict[str, Any]:
        """The plain dict the runners (and the remote agent) are configured from."""
        return {"backend": self.backend, "precision": self.precision, "batch": self.batch, "threads": self.threads,
                "providers": list(self.providers), "device": self.device, "cuda_graph": self.cuda_graph,
                "workspace_mb": self.workspace_mb, "warmup_s": self.warmup_s, "iterations": self.iterations,
                "nice": self.nice, "pin_core": self.pin_core}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["resolutions"], d["providers"] = list(self.resolutions), list(self.providers)
        return d

    def check_resolution(self, resolution: int) -> int:
        if resolution not in self.resolutions:
            raise DassEdgeError(
                f"device profile {self.name!r} is set up for resolutions {', '.join(map(str, self.resolutions))}, "
                f"not {resolution}; pass --resolution with one of those or add yours to a copy of the profile"
            )
        return resolution


def _fail(src: str, msg: str) -> DassEdgeError:
    return DassEdgeError(f"device profile {src} is invalid: {msg}")


def _check_type(src: str, key: str, value: Any, kind: type) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise _fail(src, f"{key} must be {kind.__name__}, got {value!r}")
    return value


def profile_from_dict(d: Any, src: str) -> DeviceProfile:
    """Validate a parsed YAML document and build the profile (every problem is a one-line error)."""
    if not isinstance(d, dict):
        raise _fail(src, "expected a mapping at the top level")
    allowed = {"name", "description", "backend", "precision", "batch", "threads", "resolutions", "providers",
               "device", "cuda_graph", "workspace_mb", "measurement", "clocks", "detect", "remote_python",
               "backend_version", "fidelity_target"}
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise _fail(src, f"unknown keys {unknown}; allowed: {sorted(allowed)}")
    for key in ("name", "description", "backend", "precision", "batch", "threads", "resolutions", "measurement"):
        if key not in d:
            raise _fail(src, f"missing key {key!r}")
    kw: dict[str, Any] = {"source": src}
    for key in ("name", "description", "backend", "precision", "device", "detect", "remote_python", "backend_version"):
        if key in d:
            kw[key] = _check_type(src, key, d[key], str)
    for key in ("batch", "threads", "workspace_mb"):
        if key in d:
            kw[key] = _check_type(src, key, d[key], int)
            if kw[key] < 1:
                raise _fail(src, f"{key} must be >= 1")
    if "cuda_graph" in d:
        kw["cuda_graph"] = _check_type(src, "cuda_graph", d["cuda_graph"], bool)
    if kw["backend"] not in backend_names():
        raise _fail(src, f"backend {kw['backend']!r} is not one of {', '.join(backend_names())}")
    backend = get_backend(kw["backend"])
    if kw["precision"] not in PRECISIONS:
        raise _fail(src, f"precision {kw['precision']!r} is not one of {', '.join(PRECISIONS)}")
    if kw["precision"] not in backend.precisions:
        others = ", ".join(b for b in backend_names() if kw["precision"] in get_backend(b).precisions)
        raise _fail(src, f"the {backend.name} backend measures {' or '.join(backend.precisions)}; "
                         f"use {others} for {kw['precision']}")
    res = d["resolutions"]
    if not isinstance(res, list) or not res or not all(isinstance(r, int) and 8 <= r <= 1024 for r in res):
        raise _fail(src, "resolutions must be a non-empty list of integers in 8..1024")
    kw["resolutions"] = tuple(res)
    prov = d.get("providers", [])
    if not isinstance(prov, list) or not all(isinstance(p, str) for p in prov):
        raise _fail(src, "providers must be a list of onnxruntime execution provider names")
    takes_providers = "providers" in backend.options
    if prov and not takes_providers:
        users = " or ".join(b for b in backend_names() if "providers" in get_backend(b).options)
        raise _fail(src, f"providers only apply to the {users} backend")
    kw["providers"] = tuple(prov) or (("CPUExecutionProvider",) if takes_providers else ())
    m = d["measurement"]
    if not isinstance(m, dict) or set(m) - set(_MEASUREMENT_KEYS):
        raise _fail(src, f"measurement must be a mapping with keys among {sorted(_MEASUREMENT_KEYS)}")
    for key, kind in _MEASUREMENT_KEYS.items():
        if key in m:
            kw[key] = _check_type(src, f"measurement.{key}", m[key], kind)
            if key == "nice":
                if not -20 <= kw[key] <= 19:
                    raise _fail(src, "measurement.nice must be in -20..19")
            elif kind is not bool and kw[key] < (0 if key == "warmup_s" else 1):
                raise _fail(src, f"measurement.{key} must be {'>= 0' if key == 'warmup_s' else '>= 1'}")
    target = d.get("fidelity_target", {}) or {}
    if not isinstance(target, dict) or set(target) - set(_TARGET_KEYS):
        raise _fail(src, f"fidelity_target must be a mapping with keys among {sorted(_TARGET_KEYS)}")
    for key, (attr, lo, hi) in _TARGET_KEYS.items():
        if key in target:
            kw[attr] = _check_type(src, f"fidelity_target.{key}", target[key], float)
            if not lo <= kw[attr] <= hi:
                raise _fail(src, f"fidelity_target.{key} must be in {lo:g}..{hi:g}")
    clocks = d.get("clocks", {}) or {}
    if not isinstance(clocks, dict):
        raise _fail(src, "clocks must be a mapping {item: required|recorded}")
    for item, policy in clocks.items():
        if item not in CLOCK_ITEMS or policy not in _CLOCK_POLICIES:
            raise _fail(src, f"clocks.{item}: {policy!r}; items are {', '.join(CLOCK_ITEMS)}, "
                             f"values {' or '.join(_CLOCK_POLICIES)}")
    kw["clocks"] = dict(clocks)
    if kw.get("device", "cpu") not in ("cpu", "cuda") and not str(kw.get("device", "")).startswith("cuda:"):
        raise _fail(src, f"device must be cpu or cuda, got {kw['device']!r}")
    return DeviceProfile(**kw)


def _read_profile(path: Path) -> DeviceProfile:
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as e:
        raise DassEdgeError(f"cannot read device profile {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise DassEdgeError(f"device profile {path} is not valid YAML ({str(e).splitlines()[0]})") from None
    return profile_from_dict(doc, str(path))


def user_profiles_dir() -> Path:
    """``$DASS_EDGE_PROFILES``, else the platform's user config dir (``~/.config/dass-edge/profiles``)."""
    env = os.environ.get("DASS_EDGE_PROFILES")
    if env:
        return Path(env)
    import platformdirs

    return platformdirs.user_config_path("dass-edge") / "profiles"


def _profile_files() -> dict[str, Path]:
    files: dict[str, Path] = {}
    for folder in (profiles_dir(), user_profiles_dir()):
        if folder.is_dir():
            for p in sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml")):
                files[p.stem] = p
    return files


def list_profiles() -> list[DeviceProfile]:
    """Every known profile (shipped, then the user's), sorted by name."""
    return [_read_profile(p) for _, p in sorted(_profile_files().items())]


def load_profile(name: str | os.PathLike | DeviceProfile) -> DeviceProfile:
    """A profile by name (``cpu``, ``jetson-orin-nano``, ...) or by YAML path.

    Raises:
        DassEdgeError: unknown name, unreadable or invalid file, or a file whose ``name`` differs from its stem.
    """
    if isinstance(name, DeviceProfile):
        return name
    text = str(name)
    if text.endswith((".yaml", ".yml")):
        path = Path(text)
        if not path.is_file():
            raise DassEdgeError(f"device profile file {path} does not exist")
        return _read_profile(path)
    files = _profile_files()
    if text not in files:
        known = ", ".join(sorted(files)) or "none"
        raise DassEdgeError(f"unknown device {text!r}; known devices: {known} (or pass a profile .yaml file)")
    profile = _read_profile(files[text])
    if profile.name != text:
        raise DassEdgeError(f"device profile {files[text]} names itself {profile.name!r}; "
                            "rename the file or the profile")
    return profile


def resolve_device(name: str | os.PathLike | DeviceProfile, target: SshTarget | None = None) -> DeviceProfile:
    """A profile by name or file; ``jetson`` means the Jetson this runs on, or the one behind ``target``
    (see :mod:`dass_edge.latency.detect`)."""
    if str(name) != "jetson":
        return load_profile(name)
    from dass_edge.latency.detect import match_jetson, read_identity

    identity = read_identity(target, local_model=jetson_model)
    return match_jetson(identity, list_profiles(), target.label if target else "this machine", remote=bool(target))

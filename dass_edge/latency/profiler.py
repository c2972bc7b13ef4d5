"""``dass-edge profile``: measure every entry of a search space on a device and write its table.

Steps: plan (entries of the space, N random students, the overhead model) -> write the model files
that are missing -> measure the (model, round) pairs that are missing, locally or through the SSH
agent, appending each result to a journal as it arrives -> summarize, fit the correction, validate,
hold it to the profile's fidelity target (re-measuring what was disturbed, :mod:`~dass_edge.latency.gate`)
and write the table atomically. The plan's fingerprint names a work folder in the table store, so a
killed run resumes from its journal and measures only what is missing; the table appears only when
complete.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dass_edge import __version__
from dass_edge.errors import DassEdgeError
from dass_edge.io import atomic_write_json, ensure_writable_dir
from dass_edge.latency.artifacts import MODEL_FORMATS, EntryArtifact, OverheadArtifact, StudentArtifact
from dass_edge.latency.entries import entry_params, space_entries, spec_entries
from dass_edge.latency.fidelity import fit_correction
from dass_edge.latency.gate import FidelityTarget, GateReport, run_gate
from dass_edge.latency.graphs import OPSET
from dass_edge.latency.profiles import DeviceProfile, resolve_device
from dass_edge.latency.provenance import backend_version, measured_on
from dass_edge.latency.remote import SshTarget
from dass_edge.latency.runners import BackendUnavailable, RunnerError, get_backend, make_runner
from dass_edge.latency.runners.sysinfo import device_info
from dass_edge.latency.runners.timing import run_job
from dass_edge.latency.stats import UNDISTURBED_TOLERANCE, summarize_rounds
from dass_edge.latency.store import table_filename, user_tables_dir
from dass_edge.latency.table import FORMAT, LUT_STATISTIC, VERSION, LatencyTable
from dass_edge.spec import ModelSpec
from dass_edge.validate import check_output_file

__all__ = ["ProfileResult", "profile_device"]

Progress = Callable[[str, int, int], None]


@dataclass
class ProfileResult:
    """What a profiling run produced."""

    table: LatencyTable
    path: Path
    measured: int  # (model, round) pairs measured by this run
    reused: int  # pairs taken from an interrupted earlier run
    elapsed_s: float
    gate: GateReport | None = None  # what the fidelity gate found and re-measured (None: no fidelity students)


@dataclass
class _Item:
    id: str
    file: str
    build: Callable[[Path], Path]
    input_shape: tuple[int, ...]
    sessions: int


class _Plan:
    """Everything one table needs measured, and its fingerprint (the work folder's name)."""

    def __init__(self, profile: DeviceProfile, teacher: ModelSpec, fixed_last_stage: bool, students: int,
                 seed: int, host: str | None) -> None:
        from dass_edge.space import SearchSpace

        self.profile, self.teacher, self.fixed_last_stage, self.host = profile, teacher, fixed_last_stage, host
        self.space = SearchSpace(teacher, fixed_last_stage=fixed_last_stage)
        self.entries = space_entries(self.space, profile.batch)
        self.students = self.space.sample_many(students, seed=seed) if students else []
        b, prec = profile.backend, profile.precision
        ov = OverheadArtifact(b, prec)
        many = profile.fidelity_sessions
        self.items: list[_Item] = [_Item("overhead", "0000" + ov.suffix, ov, ov.input_shape, many)]
        for e in self.entries:
            art = EntryArtifact(e, b, prec)
            self.items.append(_Item(e.key, f"{len(self.items):04d}{art.suffix}", art, art.input_shape,
                                    profile.sessions))
        for i, arch in enumerate(self.students):
            art = StudentArtifact(self.space.to_spec(arch), profile.batch, b, prec)
            self.items.append(_Item(f"student/{i}", f"{len(self.items):04d}{art.suffix}", art, art.input_shape, many))
        skip = ("description", "source", "backend_version")  # labels, not measurement settings
        ident = {"profile": {k: v for k, v in profile.to_dict().items() if k not in skip},
                 "teacher": teacher.to_dict(), "fixed_last_stage": fixed_last_stage, "host": host, "opset": OPSET,
                 "items": [it.id for it in self.items], "students": [a.key() for a in self.students]}
        self.fingerprint = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


class _Journal:
    """Append-only record of measured (model, round) pairs; a torn last line is ignored on resume."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rounds: dict[str, dict[int, list[float]]] = defaultdict(dict)
        self.nice: set[int | None] = set()
        self.cores: set[int | None] = set()
        if path.exists():
            for line in path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                    self.rounds[rec["id"]][int(rec["round"])] = [float(v) for v in rec["us"]]
                    self.nice.add(rec.get("nice"))
                    self.cores.add(rec.get("core"))
                except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                    continue
        self._f = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
        if path.stat().st_size and not path.read_bytes().endswith(b"\n"):
            self._f.write("\n")  # a killed run left half a line: start the next record on its own line

    def add(self, rec: dict) -> None:
        self._f.write(json.dumps({k: rec.get(k) for k in ("id", "round", "us", "nice", "core", "t")}) + "\n")
        self._f.flush()
        self.rounds[rec["id"]][int(rec["round"])] = rec["us"]
        self.nice.add(rec.get("nice"))
        self.cores.add(rec.get("core"))

    def close(self) -> None:
        self._f.close()

    @property
    def size(self) -> int:
        return sum(len(r) for r in self.rounds.values())


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def _clocks(info: dict, profile: DeviceProfile, where: str) -> dict[str, Any]:
    jetson = info.get("jetson") or {}
    found = {"nvpmodel": jetson.get("nvpmodel"), "jetson_clocks": jetson.get("jetson_clocks"),
             "cpu_governor": info["cpu"].get("governor"),
             "gpu_clocks": jetson.get("gpu_clocks") or (info.get("gpu") or {}).get("max_sm_clock")}
    out = {}
    for item, policy in profile.clocks.items():
        if policy == "required" and found.get(item) in (None, "", []):
            raise DassEdgeError(f"device profile {profile.name!r} requires {item} to be recorded, but it cannot be "
                                f"read on {where}; is this the right device, and are the NVIDIA tools installed?")
        out[item] = found.get(item)
    return out


def profile_device(
    device: str | Path | DeviceProfile,
    teacher: ModelSpec,
    resolution: int | None = None,
    *,
    target: SshTarget | None = None,
    out: str | Path | None = None,
    fixed_last_stage: bool = True,
    students: int | None = None,
    seed: int = 0,
    progress: Progress | None = None,
    keep_records: str | Path | None = None,
) -> ProfileResult:
    """Measure a latency table for ``teacher``'s search space on ``device``.

    Args:
        device: profile name, ``jetson`` (detected), a profile file or object.
        teacher: the teacher whose students are searched (its stem, widths, depths, classes).
        resolution: input side; default: the teacher's. Must be one of the profile's resolutions.
        target: measure on this SSH device instead of here.
        out: table path; default: the user's table store, named for what the table is.
        fixed_last_stage: as in :class:`~dass_edge.space.SearchSpace` (True covers the default search).
        students: fidelity students; default: the profile's ``fidelity_students``.
        seed: seed of the student sample.
        progress: ``progress(phase, done, total)`` with phase ``export`` or ``measure``.
        keep_records: copy the raw measurement journal (one JSON line per model and round: per-call times, when
            it ended) to this file before the work folder is removed, to study what disturbed a table.

    Raises:
        DassEdgeError: bad input, missing backend, unreachable device; no table is written then.
    """
    t0 = time.perf_counter()
    progress = progress or (lambda phase, done, total: None)
    plan = _plan(device, teacher, resolution, target, fixed_last_stage, students, seed)
    if out is not None:  # checked before the work folder exists, so a bad --out leaves nothing behind
        check_output_file(out, "--out")
    if keep_records is not None:
        check_output_file(keep_records, "--keep-records")
    work = ensure_writable_dir(user_tables_dir() / ".work" / plan.fingerprint)
    _write_models(plan, ensure_writable_dir(work / "models"), target, progress)
    journal = _Journal(work / "records.jsonl")
    reused = journal.size
    try:
        t_measure = time.perf_counter()
        clocks = _measure(plan, work, journal, target, seed, progress)
        per_round = (time.perf_counter() - t_measure) / max(journal.size - reused, 1)
        missing = [it.id for it in plan.items if len(journal.rounds.get(it.id, {})) < it.sessions]
        if missing:
            raise DassEdgeError(f"{len(missing)} models were not measured (first: {missing[0]}); run again")
        info = json.loads((work / "device.json").read_text())  # the device that took the first measurement
        data, gate = _gate(plan, journal, per_round, lambda: _assemble(
            plan, journal, info, clocks, target, time.perf_counter() - t0, reused),
            lambda attempt: _measure(plan, work, journal, target, seed + 7919 * attempt, progress))
    finally:
        journal.close()
    table = LatencyTable(data)
    prov = data["provenance"]
    path = Path(out) if out is not None else user_tables_dir() / table_filename(
        plan.profile.name, prov["measured_on"], plan.profile.backend, prov["backend_version"], plan.profile.precision,
        plan.profile.threads, plan.profile.batch, plan.teacher, plan.teacher.resolution)
    atomic_write_json(path, data)
    if keep_records is not None:
        Path(keep_records).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(work / "records.jsonl", keep_records)
    shutil.rmtree(work, ignore_errors=True)
    table.path = path
    return ProfileResult(table, path, journal.size - reused, reused, time.perf_counter() - t0, gate)


def _gate(plan: _Plan, journal: _Journal, per_round: float, assemble: Callable[[], dict],
          remeasure: Callable[[int], None]) -> tuple[dict, GateReport | None]:
    """Assemble the table and hold it to the profile's fidelity target (see :mod:`dass_edge.latency.gate`)."""
    data = assemble()
    if not plan.students:
        return data, None
    p = plan.profile

    def parts(i: int) -> list[str]:
        return [f"student/{i}", *(e.key for e in spec_entries(plan.space.to_spec(plan.students[i]), p.batch))]

    return run_gate(data, journal.rounds, assemble, remeasure, parts,
                    FidelityTarget(p.target_within_10pct, p.target_spearman), p.remeasure_s, per_round)


def _plan(device: str | Path | DeviceProfile, teacher: ModelSpec, resolution: int | None, target: SshTarget | None,
          fixed_last_stage: bool, students: int | None, seed: int) -> _Plan:
    """Check every input (and reach the device) before anything is written."""
    profile = resolve_device(device, target)
    resolution = profile.check_resolution(teacher.resolution if resolution is None else resolution)
    n_students = profile.fidelity_students if students is None else int(students)
    if n_students < 0:
        raise DassEdgeError("--students must be >= 0")
    if target is not None:
        target.python = target.python if target.python != "python3" else profile.remote_python
        target.check()
    return _Plan(profile, teacher.replace(resolution=resolution), fixed_last_stage, n_students, seed,
                 target.label if target else None)


def _write_models(plan: _Plan, models: Path, target: SshTarget | None, progress: Progress) -> None:
    """Build the model files that are missing (the overhead model first, to check a local backend early)."""
    missing = [it for it in plan.items if not (models / it.file).exists()]
    for i, it in enumerate(missing):
        it.build(models / it.file)
        progress("export", i + 1, len(missing))
        if it.id == "overhead" and target is None:
            _check_local_backend(plan.profile, models / it.file, it.input_shape)


def _measure(plan: _Plan, work: Path, journal: _Journal, target: SshTarget | None, seed: int,
             progress: Progress) -> dict:
    """Measure the missing (model, round) pairs into the journal; returns the clock readings."""
    profile, models = plan.profile, work / "models"
    todo = [(it, [r for r in range(it.sessions) if r not in journal.rounds.get(it.id, {})]) for it in plan.items]
    items = [{"id": it.id, "path": str(models / it.file), "artifact": str(models / it.file),
              "input_shape": list(it.input_shape), "rounds": rounds, "sessions": it.sessions}
             for it, rounds in todo if rounds]
    total = sum(it.sessions for it in plan.items)
    done = [journal.size]
    clocks: dict = {}
    info_path = work / "device.json"

    def emit(rec: dict) -> None:
        journal.add(rec)
        done[0] += 1
        progress("measure", done[0], total)

    def check_info(info: dict) -> None:
        """Clocks the profile requires must be readable; a resumed run must be on the same device."""
        clocks.update(_clocks(info, profile, target.label if target else "this machine"))
        if info_path.exists():
            first = measured_on(json.loads(info_path.read_text()), profile)
            if first != measured_on(info, profile):
                raise DassEdgeError(f"this run would resume measurements taken on another device ({first}); "
                                    f"delete {work} to start over")
        else:
            atomic_write_json(info_path, info)

    progress("measure", done[0], total)
    settings = profile.backend_settings()
    if target is not None:
        target.run_job(settings, items, emit, seed=seed, on_info=check_info)
        return clocks
    check_info(device_info(profile.backend))
    try:
        run_job(items, settings, emit, seed=seed)
    except BackendUnavailable as e:
        raise DassEdgeError(f"device {profile.name!r}: {e}") from None
    except RunnerError as e:
        raise DassEdgeError(f"measuring on {profile.name!r} failed: {e}") from None
    return clocks


def _check_local_backend(profile: DeviceProfile, artifact: Path, input_shape: tuple[int, ...]) -> None:
    try:
        with make_runner(profile.backend_settings(), str(artifact), input_shape):
            pass
    except BackendUnavailable as e:
        raise DassEdgeError(f"device {profile.name!r} cannot be measured here: {e}") from None
    except RunnerError as e:
        raise DassEdgeError(f"device {profile.name!r}: {e}") from None


def _assemble(plan: _Plan, journal: _Journal, info: dict, clocks: dict, target: SshTarget | None, elapsed: float,
              reused: int) -> dict:
    profile = plan.profile

    sessions = {it.id: it.sessions for it in plan.items}

    def summary(item_id: str) -> dict:
        rounds = journal.rounds[item_id]
        return summarize_rounds([rounds[r] for r in range(sessions[item_id])])

    overhead = summary("overhead")
    entries = {}
    for e in plan.entries:
        s = summary(e.key)
        net = {k: max(s[k] - overhead[LUT_STATISTIC], 0.0) for k in ("p25_ms", "p50_ms", "p90_ms", "mean_ms")}
        entries[e.key] = {**e.to_dict(), **net, "std_ms": s["std_ms"], "count": s["count"], "sessions": s["sessions"],
                          "sessions_kept": s["sessions_kept"],
                          "raw_p50_ms": s["p50_ms"], "params": entry_params(e)}
    prov = {
        "measured_on": measured_on(info, profile),
        "date": _now(),
        "host": target.label if target else "local",
        "profile": {k: v for k, v in profile.to_dict().items() if k != "source"},
        "backend": profile.backend,
        "backend_version": backend_version(info, profile.backend),
        "precision": profile.precision,
        "threads": profile.threads,
        "batch": profile.batch,
        "clocks": clocks,
        "device": info,
        "settings": {"warmup_s": profile.warmup_s, "iterations": profile.iterations, "sessions": profile.sessions,
                     "rounds": "each model's rounds spread evenly over shuffled passes; a fresh session per model "
                               "and round",
                     "fidelity_sessions": profile.fidelity_sessions,
                     "nice_requested": profile.nice, "nice_in_effect": sorted(journal.nice, key=str),
                     "pin_core_requested": profile.pin_core, "pinned_cores": sorted(journal.cores, key=str),
                     "sessions_kept": f"sessions whose median is over {UNDISTURBED_TOLERANCE}x the model's fastest "
                                      "session's are left out (other jobs only slow sessions down)",
                     "p50": "per-session medians, lower quartile across the kept sessions; p50_all_sessions: the "
                            "median over every session", "p25/p90": "p25 of the kept sessions' calls, p90 of all calls",
                     "overhead": "per-call latency of a one-Relu model (its p25), subtracted from every entry "
                                 "statistic and added once per model",
                     "lut_statistic": "entries are added up by their p25; the correction maps that sum to the "
                                      "end-to-end median",
                     "models": MODEL_FORMATS[get_backend(profile.backend).suffix].format(opset=OPSET)},
        "elapsed_s": round(elapsed, 1),
        "load_average_end": list(os.getloadavg()) if target is None and hasattr(os, "getloadavg") else None,
        "resumed_pairs": reused,
        "dass_edge_version": __version__,
    }
    data = {
        "format": FORMAT, "version": VERSION, "device": profile.name, "backend": profile.backend,
        "precision": profile.precision, "batch": profile.batch, "threads": profile.threads,
        "resolution": plan.teacher.resolution,
        "space": {"teacher": plan.teacher.to_dict(), "fixed_last_stage": plan.fixed_last_stage},
        "lut_statistic": LUT_STATISTIC, "provenance": prov, "overhead": overhead, "entries": entries,
        "correction": {"features": ["lut_ms"], "p50": [1.0], "p90_ratio": 1.0},
        "fidelity": {"students": 0, "within_10pct": None, "rmspe": None, "spearman": None},
    }
    if plan.students:
        draft = LatencyTable(data)
        samples = []
        for i, arch in enumerate(plan.students):
            spec = plan.space.to_spec(arch)
            lut, mb = draft.lut_sum(spec)
            s = summary(f"student/{i}")
            samples.append({"arch": arch.to_dict(), "lut_ms": lut, "weights_mb": mb, "p50_ms": s["p50_ms"],
                            "p50_all_sessions_ms": s["p50_all_sessions_ms"], "p90_ms": s["p90_ms"],
                            "session_spread": s["session_spread"]})
        data["correction"], data["fidelity"] = fit_correction(samples)
    return data

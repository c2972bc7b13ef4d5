"""Few-shot latency tables: measure N whole students on a new device and transfer a table measured elsewhere.

A full table is hundreds of block measurements (on a Jetson, hundreds of TensorRT engine builds). Most of
what changes between two devices is a few numbers: how much faster each kind of block runs, how much a
weight costs (cache, memory bandwidth), the per-call overhead. So a source table's entries are mapped to
the target with a small linear model fitted on whole students measured on the target::

    target_ms(student) = sum over kinds k of (a_k * source ms in k + w_k * parameters in k, millions)
                         + v * block activations (millions) + u * block MACs (billions) + d * blocks + c

The two size columns are what a change of number format or kernel library moves that the source
latency cannot: quantize/dequantize and elementwise work scale with the tensors a block reads and
writes, arithmetic with its MACs (an INT8 Q/DQ target runs the 32 px stage at 1.3x the FP32 source and
the 8 px one at 0.5x: one scale on the source latency cannot follow both). ``d`` is a fixed cost per block:
a target with more kernel calls per block (INT8 Q/DQ adds quantize and dequantize nodes) or a different
dispatch cost pays it once per block whatever the block's size. The fit minimizes
relative error plus a ridge penalty pulling every coefficient toward the source's own correction times
one global ratio, the size columns toward 0 (so 5 students give a scaled source table, 40 a mix); the
penalty's strength is chosen by leave-one-out, raised if needed so that no entry gets a negative
latency. Every column is a sum over entries, so the fit maps back onto the entries exactly. Students are
picked to span the space (the teacher, the smallest student, then farthest-point in an architecture
descriptor), not at random.

The result is a normal table (entries, overhead, identity correction) marked ``"transferred"`` with its
source, the samples and the fit, and a fidelity report on random students that were *not* used for the
fit, measured on the target through the same measurement path (locally or the SSH agent) as
``dass-edge profile``.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dass_edge import __version__
from dass_edge.errors import DassEdgeError
from dass_edge.io import atomic_write_json, ensure_writable_dir
from dass_edge.latency.artifacts import MODEL_FORMATS, StudentArtifact
from dass_edge.latency.entries import Entry, entry_params, spec_entries
from dass_edge.latency.gate import FidelityTarget
from dass_edge.latency.graphs import OPSET
from dass_edge.latency.profiles import DeviceProfile, resolve_device
from dass_edge.latency.provenance import backend_version, measured_on
from dass_edge.latency.remote import SshTarget
from dass_edge.latency.runners import BackendUnavailable, RunnerError, get_backend
from dass_edge.latency.runners.sysinfo import device_info
from dass_edge.latency.runners.timing import run_job
from dass_edge.latency.stats import fidelity_metrics, summarize_rounds
from dass_edge.latency.store import table_filename, user_tables_dir
from dass_edge.latency.table import FORMAT, LUT_STATISTIC, VERSION, LatencyTable
from dass_edge.space import block_macs
from dass_edge.spec import conv_out

__all__ = ["COLUMNS", "FewShotResult", "TransferFit", "describe_transfer", "entry_columns", "fewshot_warning",
           "fit_transfer", "measure_rounds", "measure_students", "profile_fewshot", "spanning_students",
           "transfer_table"]

Progress = Callable[[str, int, int], None]
_KINDS = ("stem", "block", "head")
_LAMBDAS = tuple(10.0 ** k for k in np.arange(-3.0, 3.01, 0.5))
#: Of the ridge strengths whose leave-one-out error is within this factor of the best, take the strongest
#: (few noisy students should not buy a wild per-group fit for a marginal gain).
_LOO_TOLERANCE = 1.1
MIN_SAMPLES = 3


# -- which students -----------------------------------------------------------------------------
def _descriptor(space, arch) -> np.ndarray:
    """Per stage: depth as a share of the teacher's, mean width as a share of the widest option."""
    out = []
    for d_max, opts, d, ws in zip(space.max_depths, space.width_options, arch.depths, arch.widths):
        out += [d / d_max, float(np.mean(ws)) / max(opts)]
    return np.array(out)


def spanning_students(space, n: int, seed: int = 0, pool: int = 2000) -> list:
    """``n`` students that cover the space: the teacher, the smallest, then farthest-point picks.

    Farthest-point order is nested (the first 10 of 20 are the 10), so the picks for a small ``n`` are a
    prefix of those for a larger one. Candidates: ``pool`` random students (``seed``).
    """
    if n < 1:
        return []
    cands = list(dict.fromkeys([space.teacher_arch(), space.smallest_arch(),
                                *space.sample_many(min(pool, space.size()), seed=seed)]))
    feats = np.stack([_descriptor(space, a) for a in cands])
    picked = [0, 1][:n]
    dist = np.min([np.linalg.norm(feats - feats[i], axis=1) for i in picked], axis=0)
    while len(picked) < min(n, len(cands)):
        i = int(np.argmax(dist))
        picked.append(i)
        dist = np.minimum(dist, np.linalg.norm(feats - feats[i], axis=1))
    return [cands[i] for i in picked]


# -- the transfer model -------------------------------------------------------------------------
#: The transfer's columns, in order: per kind a scale on the source ms and a weight on millions of
#: parameters; for blocks a drift of their scale with log2 of their resolution, a weight on millions of
#: activation elements (input + output tensor), on billions of multiply-accumulates and on the number of
#: blocks; a constant.
COLUMNS = tuple(f"src:{k}" for k in _KINDS) + tuple(f"mparams:{k}" for k in _KINDS) + (
    "src*log2res:block", "mact:block", "gmacs:block", "calls:block", "const")


def entry_columns(e: Entry, source_ms: float) -> dict[str, float]:
    """What one entry adds to each column (``const`` is per student, not per entry).

    Only blocks get the size columns: the stem varies only by its width here, which its own source
    scale already follows, and with a fixed last stage the head does not vary at all.
    """
    cols = {f"src:{e.kind}": float(source_ms), f"mparams:{e.kind}": entry_params(e) / 1e6}
    if e.kind == "block":
        out_res = conv_out(e.resolution, e.stride)
        cols["mact:block"] = (e.in_ch * e.resolution ** 2 + e.out_ch * out_res ** 2) * e.batch / 1e6
        cols["gmacs:block"] = block_macs(e.in_ch, e.out_ch, e.stride, e.resolution, e.has_projection) * e.batch / 1e9
        cols["calls:block"] = 1.0  # a per-block dispatch cost: the same kernel calls at any batch
        # the source scale drifting with the block's resolution: a target whose kernels gain more on large
        # feature maps (INT8's compute-bound convolutions) speeds up early stages more than late ones
        cols["src*log2res:block"] = float(source_ms) * math.log2(e.resolution)
    return cols


def _entry_row(e: Entry, source_ms: float) -> np.ndarray:
    row = entry_columns(e, source_ms)
    return np.array([row.get(c, 0.0) for c in COLUMNS])


def _student_row(source: LatencyTable, spec) -> np.ndarray:
    stat = source.data["lut_statistic"]
    row = np.zeros(len(COLUMNS))
    row[-1] = 1.0
    for e in spec_entries(spec, source.batch):
        src = source.entries.get(e.key)
        if src is None:
            raise DassEdgeError(f"the source table has no entry {e.key}; it was measured for another space")
        row += _entry_row(e, src[stat])
    return row


def _entry_matrix(source: LatencyTable) -> np.ndarray:
    """Every source entry's row: the transferred table's entry latencies are this times the coefficients."""
    stat = source.data["lut_statistic"]
    return np.stack([_entry_row(Entry.from_dict(e), e[stat]) for e in source.entries.values()])


def _prior(source: LatencyTable) -> np.ndarray:
    """The source's own correction written in the transfer's columns (its prediction, exactly)."""
    corr = dict(zip(source.correction["features"], source.correction["p50"]))
    a, w, c = corr.get("lut_ms", 0.0), corr.get("weights_mb", 0.0), corr.get("const", 0.0)
    per_mparam = w * {"fp32": 4, "fp16": 2, "int8": 1}[source.precision]  # weights_mb -> per million parameters
    over = float(source.data["overhead"][source.data["lut_statistic"]])
    prior = {**{f"src:{k}": a for k in _KINDS}, **{f"mparams:{k}": per_mparam for k in _KINDS},
             "const": a * over + c}
    return np.array([prior.get(col, 0.0) for col in COLUMNS])  # the size columns: the source has none


def _ridge(x: np.ndarray, y: np.ndarray, prior: np.ndarray, scale: np.ndarray, lam: float) -> np.ndarray:
    """min sum(((x b - y) / y)^2) + lam * sum(((b - prior) / scale)^2), in closed form."""
    xw = x / y[:, None]
    r = np.ones_like(y) - xw @ prior
    a = xw * scale  # b = prior + phi * scale; columns with scale 0 stay at the prior
    phi = np.linalg.solve(a.T @ a + lam * np.eye(a.shape[1]), a.T @ r)
    return prior + phi * scale


@dataclass
class TransferFit:
    """Coefficients of the transfer, the ridge strength leave-one-out chose, and the fit's own LOO figures.

    ``raised``: the ridge was made stronger than leave-one-out chose so that no entry of the transferred
    table gets a negative latency (else the table could not reproduce the fit exactly).
    """

    columns: list[str]
    coef: np.ndarray
    lam: float
    ratio: float
    loo: dict[str, Any]
    raised: bool = False

    def predict_ms(self, source: LatencyTable, spec) -> float:
        """The fit's median latency of ``spec``: what the table :func:`transfer_table` writes predicts."""
        return float(_student_row(source, spec) @ self.coef)

    def to_dict(self) -> dict[str, Any]:
        return {"model": "target = sum_k a_k * source_ms(k) + r * sum_blocks source_ms * log2(resolution) "
                         "+ sum_k w_k * Mparams(k) + v * Mactivations(blocks) "
                         "+ u * GMACs(blocks) + d * blocks + c; relative least squares, ridge toward the source's "
                         "correction times one global ratio (size columns toward 0), strength by leave-one-out",
                "coefficients": dict(zip(self.columns, (float(c) for c in self.coef))), "ridge": float(self.lam),
                "ridge_raised_for_nonnegative_entries": self.raised, "global_ratio": self.ratio,
                "leave_one_out": self.loo}


def fit_transfer(source: LatencyTable, specs: Sequence, measured_ms: Sequence[float]) -> TransferFit:
    """Fit the transfer from ``source`` to the device that measured ``measured_ms`` (medians of ``specs``).

    Raises:
        DassEdgeError: fewer than 3 students, or a spec the source does not cover.
    """
    if len(specs) < MIN_SAMPLES:
        raise DassEdgeError(f"a few-shot transfer needs at least {MIN_SAMPLES} measured students, got {len(specs)}")
    x = np.stack([_student_row(source, s) for s in specs])
    y = np.asarray(measured_ms, dtype=float)
    base = _prior(source)
    ratio = float(np.median(y / (x @ base)))
    prior = base * ratio
    # The penalty is on each coefficient's relative change from the prior; a size column (prior 0) moves by
    # one typical latency per unit of phi, so it is as free as a source scale, and no freer.
    scale = np.where(np.abs(prior) > 0, np.abs(prior), y.mean() / np.maximum(np.abs(x).mean(axis=0), 1e-12))
    # A column that does not vary over the students (the head with a fixed last stage) cannot be told apart
    # from the constant: it stays at the prior.
    spread = np.ptp(x, axis=0)
    scale = np.where((spread > 1e-6 * np.abs(x).max(axis=0)) | (np.arange(x.shape[1]) == x.shape[1] - 1), scale, 0.0)
    n = len(y)
    tried = []
    for lam in _LAMBDAS:
        loo = np.array([x[i] @ _ridge(x[np.arange(n) != i], y[np.arange(n) != i], prior, scale, lam)
                        for i in range(n)])
        tried.append((float(np.mean(((loo - y) / y) ** 2)), float(lam), loo))
    best = min(err for err, _, _ in tried)
    _, lam, loo = max((t for t in tried if t[0] <= best * _LOO_TOLERANCE), key=lambda t: t[1])
    coef = _ridge(x, y, prior, scale, lam)
    # Toward the prior (every entry a scaled source entry), until no entry's latency is negative.
    entries, raised = _entry_matrix(source), False
    for _, stronger, stronger_loo in sorted((t for t in tried if t[1] > lam), key=lambda t: t[1]):
        if (entries @ coef).min() >= 0:
            break
        lam, loo, raised = stronger, stronger_loo, True
        coef = _ridge(x, y, prior, scale, lam)
    return TransferFit(list(COLUMNS), coef, lam, ratio, fidelity_metrics(loo, y), raised)


def transfer_table(source: LatencyTable, fit: TransferFit) -> dict[str, Any]:
    """The source's entries mapped to the target: each statistic scaled by the entry's target/source ratio.

    An entry's target median is its row of :func:`entry_columns` times the coefficients (the fit keeps it
    non-negative). Returns ``entries``, ``overhead`` (the fit's intercept, floored at 0) and ``const_ms``
    (what the floor removed, for the correction's constant), so the table's prediction equals the fit's.
    """
    coef = dict(zip(fit.columns, fit.coef))
    stat = source.data["lut_statistic"]
    entries = {}
    for key, e in source.entries.items():
        ms = max(sum(coef[c] * v for c, v in entry_columns(Entry.from_dict(e), e[stat]).items()), 0.0)
        k = ms / e[stat] if e[stat] > 0 else 1.0
        scaled = {s: (ms if s == stat else float(e[s]) * k) for s in ("p25_ms", "p50_ms", "p90_ms", "mean_ms",
                                                                      "std_ms", "raw_p50_ms")}
        entries[key] = {**e, **scaled, "count": 0, "sessions": 0, "transferred": True}
    over_src = source.data["overhead"]
    floor = max(float(coef["const"]), 0.0)  # a negative intercept goes to the correction's constant
    k = floor / over_src[stat] if over_src[stat] > 0 else 1.0
    overhead = {**over_src, **{s: float(over_src[s]) * k for s in ("p25_ms", "p50_ms", "p90_ms", "mean_ms",
                                                                     "std_ms")}}
    overhead[stat] = floor
    overhead.update({"count": 0, "sessions": 0, "transferred": True})
    return {"entries": entries, "overhead": overhead, "const_ms": float(coef["const"]) - overhead[stat]}


# -- measuring whole students on the target ------------------------------------------------------
def measure_students(profile: DeviceProfile, specs: Sequence, target: SshTarget | None = None, seed: int = 0,
                     progress: Progress | None = None) -> tuple[list[dict], dict]:
    """End-to-end summaries of ``specs`` on the profile's device, with the profile's fidelity protocol.

    The same path as ``dass-edge profile``'s fidelity students: model files written here, measured by the
    runners locally or by the agent over SSH, ``fidelity_sessions`` fresh sessions each, rounds interleaved.

    Returns:
        ``(summaries, device_info)``.
    """
    rounds, info = measure_rounds(profile, specs, target, seed, progress)
    return [summarize_rounds(student) for student in rounds], info


def measure_rounds(profile: DeviceProfile, specs: Sequence, target: SshTarget | None = None, seed: int = 0,
                   progress: Progress | None = None) -> tuple[list[list[list[float]]], dict]:
    """Every student's sessions on the profile's device (``[student][round] -> per-call microseconds``) and
    the device's description: :func:`measure_students` before the summary."""
    progress = progress or (lambda phase, done, total: None)
    sessions = profile.fidelity_sessions
    got: dict[str, dict[int, list[float]]] = {str(i): {} for i in range(len(specs))}
    info: dict = {}
    with tempfile.TemporaryDirectory(prefix="dass-edge-fewshot-") as tmp:
        items = []
        for i, spec in enumerate(specs):
            art = StudentArtifact(spec, profile.batch, profile.backend, profile.precision)
            path = art(Path(tmp) / f"{i:04d}{art.suffix}")
            items.append({"id": str(i), "path": str(path), "artifact": str(path), "input_shape": list(art.input_shape),
                          "rounds": list(range(sessions)), "sessions": sessions})
            progress("export", i + 1, len(specs))
        total, done = len(specs) * sessions, [0]

        def emit(rec: dict) -> None:
            got[rec["id"]][int(rec["round"])] = rec["us"]
            done[0] += 1
            progress("measure", done[0], total)

        if target is not None:
            info = target.run_job(profile.backend_settings(), items, emit, seed=seed)
        else:
            info = device_info(profile.backend)
            try:
                run_job(items, profile.backend_settings(), emit, seed=seed)
            except BackendUnavailable as e:
                raise DassEdgeError(f"device {profile.name!r} cannot be measured here: {e}") from None
            except RunnerError as e:
                raise DassEdgeError(f"measuring on {profile.name!r} failed: {e}") from None
    missing = [k for k, v in got.items() if len(v) < sessions]
    if missing:
        raise DassEdgeError(f"{len(missing)} students were not measured on {profile.name!r}; run again")
    return [[got[str(i)][r] for r in range(sessions)] for i in range(len(specs))], info


# -- the command's library call -----------------------------------------------------------------
@dataclass
class FewShotResult:
    """A transferred table, where it was written, and what measuring it cost."""

    table: LatencyTable
    path: Path
    samples: int
    heldout: int
    measure_s: float  # model files, fit and held-out students measured (one interleaved job), the fit
    elapsed_s: float


def _source_label(source: LatencyTable) -> str:
    name = source.path.name if source.path else "in-memory table"
    return f"{source.device} ({source.backend} {source.precision}) on {source.provenance['measured_on']}: {name}"


def _load_source(source: str | Path | LatencyTable | None, profile: DeviceProfile, teacher, resolution: int,
                 fixed_last_stage: bool) -> LatencyTable:
    from dass_edge.latency.store import load_table
    from dass_edge.space import SearchSpace

    if isinstance(source, LatencyTable):
        table = source
    elif source is None:  # this machine's own table if it has one (the same hardware), else the newest one
        try:
            table = load_table("cpu", resolution, teacher, fixed_last_stage)
        except DassEdgeError:
            table = load_table("cpu", resolution, teacher, fixed_last_stage, this_machine=False)
    else:
        path = Path(source)
        if not path.is_file():
            raise DassEdgeError(f"--from {path}: no such table file")
        table = LatencyTable.load(path)
    if table.data.get("transferred"):
        raise DassEdgeError(f"--from {table.path}: that table is itself transferred; transfer from a measured table")
    if table.resolution != resolution:
        raise DassEdgeError(f"--from table was measured at {table.resolution} px, not {resolution}; "
                            f"pass --resolution {table.resolution} or a table measured at {resolution}")
    if table.batch != profile.batch:
        raise DassEdgeError(f"--from table has batch {table.batch}; device {profile.name!r} uses {profile.batch}")
    missing = table.missing(SearchSpace(teacher, fixed_last_stage=fixed_last_stage))
    if missing:
        raise DassEdgeError(f"--from table does not cover this teacher's search space (no {missing[0]}); "
                            "pass the table measured for this teacher")
    return table


def profile_fewshot(
    device: str | Path | DeviceProfile,
    teacher,
    samples: int,
    resolution: int | None = None,
    *,
    source: str | Path | LatencyTable | None = None,
    target: SshTarget | None = None,
    out: str | Path | None = None,
    heldout: int = 10,
    fixed_last_stage: bool = True,
    seed: int = 0,
    progress: Progress | None = None,
) -> FewShotResult:
    """Transfer ``source`` to ``device`` from ``samples`` spanning students measured there; write the table.

    Args:
        device: profile name, ``jetson`` (detected over ``target``), a profile file or object.
        teacher: the teacher whose search space the table covers.
        samples: students measured on the target for the fit (>= 3).
        resolution: input side (default: the teacher's).
        source: a measured table (path or object); default: the ``cpu`` table covering the teacher, this
            machine's if there is one, else the newest.
        target: measure on this SSH device instead of here.
        out: table path; default: the user's table store.
        heldout: random students (not used for the fit) measured on the target for the fidelity report.
        seed: seed of the candidate pool and of the held-out sample.

    Raises:
        DassEdgeError: bad input, no source table, missing backend, unreachable device; nothing is written then.
    """
    from dass_edge.space import SearchSpace

    t0 = time.perf_counter()
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < MIN_SAMPLES:
        raise DassEdgeError(f"--few-shot must be an integer >= {MIN_SAMPLES}, got {samples!r}")
    if heldout < 0:
        raise DassEdgeError("--students (held-out students) must be >= 0")
    if target is not None:
        target.check()
    profile = resolve_device(device, target)
    resolution = profile.check_resolution(int(resolution or teacher.resolution))
    teacher = teacher.replace(resolution=resolution)
    src = _load_source(source, profile, teacher, resolution, fixed_last_stage)
    if out is not None:
        ensure_writable_dir(Path(out).parent if str(Path(out).parent) else Path("."))
    if target is not None and target.python == "python3":
        target.python = profile.remote_python
    space = SearchSpace(teacher, fixed_last_stage=fixed_last_stage)
    fit_archs = spanning_students(space, samples, seed=seed)
    taken = set(fit_archs)
    check_archs = [a for a in space.sample_many(heldout + len(fit_archs), seed=seed + 1) if a not in taken][:heldout]
    fit_specs = [space.to_spec(a) for a in fit_archs]
    # One job, rounds interleaved: the held-out students are measured under the same conditions as the fit's
    # (on a busy machine, latencies drift by tens of percent within minutes).
    summaries, info = measure_students(profile, fit_specs + [space.to_spec(a) for a in check_archs], target,
                                       seed=seed, progress=progress)
    fit_sum, check_sum = summaries[:len(fit_specs)], summaries[len(fit_specs):]
    fit = fit_transfer(src, fit_specs, [s["p50_ms"] for s in fit_sum])
    measure_s = time.perf_counter() - t0
    data = _assemble(profile, src, teacher, fixed_last_stage, fit, fit_archs, fit_sum, check_archs, check_sum, info,
                     target, time.perf_counter() - t0)
    table = LatencyTable(data)
    prov = data["provenance"]
    path = Path(out) if out is not None else user_tables_dir() / table_filename(
        profile.name, prov["measured_on"], profile.backend, prov["backend_version"], profile.precision,
        profile.threads, profile.batch, teacher, resolution).replace(".json", f"_fewshot{samples}.json")
    atomic_write_json(path, data)
    table.path = path
    return FewShotResult(table, path, samples, len(check_archs), measure_s, time.perf_counter() - t0)


def _assemble(profile: DeviceProfile, src: LatencyTable, teacher, fixed_last_stage: bool, fit: TransferFit,
              fit_archs: list, fit_sum: list[dict], check_archs: list, check_sum: list[dict], info: dict,
              target: SshTarget | None, elapsed: float) -> dict:
    mapped = transfer_table(src, fit)
    ratios = [s["p90_ms"] / s["p50_ms"] for s in fit_sum + check_sum if s["p50_ms"] > 0]
    data: dict[str, Any] = {
        "format": FORMAT, "version": VERSION, "device": profile.name, "backend": profile.backend,
        "precision": profile.precision, "batch": profile.batch, "threads": profile.threads,
        "resolution": teacher.resolution, "space": {"teacher": teacher.to_dict(), "fixed_last_stage": fixed_last_stage},
        "lut_statistic": LUT_STATISTIC, "overhead": mapped["overhead"], "entries": mapped["entries"],
        "correction": {"features": ["lut_ms", "const"], "p50": [1.0, mapped["const_ms"]],
                       "p90_ratio": max(float(np.median(ratios)), 1.0),
                       "fit": "none: the transfer fit already maps to the end-to-end median"},
        "fidelity": {"students": 0, "within_10pct": None, "rmspe": None, "spearman": None},
    }
    fit_samples = [{"arch": a.to_dict(), "p50_ms": s["p50_ms"], "p90_ms": s["p90_ms"],
                    "session_spread": s["session_spread"]} for a, s in zip(fit_archs, fit_sum)]
    data["transferred"] = {"from": _source_label(src), "source_measured_on": src.provenance["measured_on"],
                           "source_date": src.provenance["date"], "samples": len(fit_archs),
                           "selection": "teacher, smallest, then farthest-point in (depth, mean width) per stage",
                           "fit": fit.to_dict(), "fit_samples": fit_samples}
    data["provenance"] = {
        "measured_on": measured_on(info, profile),
        "date": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "host": target.label if target else "local",
        "profile": {k: v for k, v in profile.to_dict().items() if k != "source"},
        "backend": profile.backend, "backend_version": backend_version(info, profile.backend),
        "precision": profile.precision, "threads": profile.threads, "batch": profile.batch,
        "device": info,
        "settings": {"warmup_s": profile.warmup_s, "iterations": profile.iterations,
                     "fidelity_sessions": profile.fidelity_sessions,
                     "entries": "transferred from the source table, not measured on this device (see transferred)",
                     "models": MODEL_FORMATS[get_backend(profile.backend).suffix].format(opset=OPSET)},
        "elapsed_s": round(elapsed, 1),
        "load_average_end": list(os.getloadavg()) if target is None and hasattr(os, "getloadavg") else None,
        "dass_edge_version": __version__,
    }
    draft = LatencyTable(data)
    if check_archs:
        space_spec = draft.teacher
        from dass_edge.space import SearchSpace

        space = SearchSpace(space_spec, fixed_last_stage=fixed_last_stage)
        pred = [draft.predict(space.to_spec(a))["p50_ms"] for a in check_archs]
        meas = [s["p50_ms"] for s in check_sum]
        data["fidelity"] = {"students": len(check_archs), "method": "held-out: random students measured on the "
                            "target, not used for the fit", **fidelity_metrics(pred, meas),
                            "samples": [{"arch": a.to_dict(), "p50_ms": s["p50_ms"], "predicted_p50_ms": p}
                                        for a, s, p in zip(check_archs, check_sum, pred)]}
    return data


def describe_transfer(data: dict) -> str | None:
    """One line saying a table is transferred, from what, with how many samples and its measured fidelity."""
    tr = data.get("transferred")
    if not tr:
        return None
    fid = data.get("fidelity") or {}
    line = f"transferred from {tr.get('from')} with {tr.get('samples')} students measured on the target"
    if fid.get("students"):
        line += (f"; held-out fidelity on {fid['students']} students: {100 * fid['within_10pct']:.0f}% within "
                 f"±10%, Spearman {fid['spearman'] if fid.get('spearman') is None else round(fid['spearman'], 3)}")
    else:
        line += "; no held-out students were measured"
    return line


def fewshot_warning(data: dict) -> str | None:
    """One line when a transferred table's held-out students miss its profile's fidelity target (else None).

    It quotes the fit students' own leave-one-out figures too: when those are poor as well, the measurements
    were noisy (a busy or throttling device) and a re-run helps; when only the held-out ones are, the transfer
    cannot express this device and more students or a full table are needed.
    """
    fid, tr = data.get("fidelity") or {}, data.get("transferred") or {}
    prof = (data.get("provenance") or {}).get("profile") or {}
    target = FidelityTarget(prof.get("target_within_10pct", 0.90), prof.get("target_spearman", 0.95))
    if not tr or target.met(fid) is not False:
        return None
    loo = (tr.get("fit") or {}).get("leave_one_out") or {}
    own = (f"; its {tr.get('samples')} fit students' own leave-one-out: {100 * (loo.get('within_10pct') or 0):.0f}% "
           f"within ±10%, Spearman {loo['spearman']:.3f}" if loo.get("spearman") is not None else "")
    device = data.get("device")
    return (f"the transferred {device} table is below its fidelity target on held-out students "
            f"({target.describe(fid)}){own}. Measure more students (--few-shot 40) or the full table "
            f"(dass-edge profile --device {device})")


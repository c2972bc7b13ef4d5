"""Benchmark: the CPU latency table for the default space: build time, fidelity, held-out check, predict speed.

Targets (issue 3): full table for the default space at 32x32 in <= 3 min on this 2-core machine; on this
CPU (onnxruntime, 1 thread) >= 90% of random students within +-10% of their measured end-to-end median
after correction, Spearman >= 0.95.

    python benchmarks/bench_latency.py [--students 30] [--heldout 30] [--ship] [--out benchmarks/results/latency.md]

1. ``profile_device("cpu", <demo teacher>, 32)``: the whole ``dass-edge profile`` pipeline, timed end to
   end (model files, measurement, fidelity students, correction fit). Its fidelity figures are leave-one-out.
2. Held out: ``--heldout`` fresh random students (another seed), measured end to end with the profile's
   protocol, against ``LatencyTable.predict``.
3. Exporter check: students exported by ``torch.onnx.export(dynamo=True)`` vs the graphs the profiler
   writes, measured interleaved: the ratio says whether the table predicts what the exporter produces.
4. ``predict`` throughput. With ``--ship`` the table is also copied into ``latency_tables/``.

``--stability N`` instead runs N consecutive fresh ``dass-edge profile --device cpu --json`` (each its own
process and temporary table store) and reports the fidelity each reached on its own (before the gate), what
the fidelity gate re-measured, the final verdict and the wall time (``benchmarks/results/latency_stability.md``,
rewritten after every profile, so an interrupted run still reports the ones it finished).
``--stability N --ab KEY=VALUE`` runs N pairs, alternating the ``cpu`` profile as shipped (A) with a copy whose
``measurement.KEY`` is VALUE (B), so both arms see the same hours of the machine
(``benchmarks/results/latency_stability_ab.md``): how a measurement change is judged before it is shipped.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import RESULTS, write_fragment  # noqa: E402

#: Published within-±10% shares of other latency predictors, for context (their papers' own devices and spaces).
PUBLISHED = [("nn-Meter (MobiSys 2021), as published", 0.990), ("LitePred (NSDI 2024), as published", 0.993)]


def _measure_files(files: dict[str, Path], rounds: int) -> dict[str, dict]:
    """End-to-end summaries with the cpu profile's protocol (fresh sessions, interleaved rounds)."""
    from dass_edge.latency import load_profile
    from dass_edge.latency.runners.timing import run_job
    from dass_edge.latency.stats import summarize_rounds

    profile = load_profile("cpu")
    got: dict[str, dict[int, list[float]]] = {k: {} for k in files}
    items = [{"id": k, "artifact": str(p), "rounds": list(range(rounds)), "sessions": rounds} for k, p in files.items()]
    run_job(items, profile.backend_settings(), lambda r: got[r["id"]].__setitem__(r["round"], r["us"]), seed=7)
    return {k: summarize_rounds([v[r] for r in sorted(v)]) for k, v in got.items()}


def _dynamo_export(spec, path: Path) -> None:
    import torch

    from dass_edge.models import build_model

    model = build_model(spec).eval()
    x = torch.randn(1, spec.in_chans, spec.resolution, spec.resolution)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), dynamo=True, input_names=["x"], output_names=["y"])


def main(argv: list[str] | None = None) -> int:
    argv = [] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--students", type=int, default=None, help="fidelity students (default: the profile's, 30)")
    ap.add_argument("--heldout", type=int, default=30, help="extra students for the held-out check")
    ap.add_argument("--exporter-students", type=int, default=5, help="students for the dynamo-exporter check")
    ap.add_argument("--controls", type=int, default=10, help="fidelity students re-measured to size the drift")
    ap.add_argument("--ship", action="store_true", help="copy the table into latency_tables/ (replacing cpu tables)")
    ap.add_argument("--repeats", type=int, default=1, help="extra independent table builds, to show run-to-run spread")
    ap.add_argument("--out", type=Path, default=RESULTS / "latency.md")
    ap.add_argument("--stability", type=int, default=0, metavar="N",
                    help="run N consecutive fresh profiles of this CPU and report their fidelity and the gate's work")
    ap.add_argument("--keep", type=Path, default=None, metavar="DIR",
                    help="with --stability: keep each profile's table and raw records as DIR/T<i>.json, DIR/R<i>.jsonl "
                         "(for --reassemble)")
    ap.add_argument("--reassemble", type=Path, default=None, metavar="DIR",
                    help="re-assemble kept profiles (DIR/R<i>.jsonl from --keep-records, DIR/T<i>.json their tables) "
                         "with other session tolerances, offline")
    ap.add_argument("--ab", metavar="KEY=VALUE", default=None,
                    help="with --stability: alternate the cpu profile with a copy whose measurement.KEY is VALUE")
    args = ap.parse_args(argv)
    command = " ".join(["python benchmarks/bench_latency.py", *argv])
    if args.reassemble:
        return reassemble(args.reassemble, command)
    if args.stability and args.ab:
        return stability_ab(args.stability, args.ab, command)
    if args.stability:
        return stability(args.stability, command, args.keep)

    from scipy import stats

    from dass_edge.latency import default_teacher_spec, load_profile, profile_device
    from dass_edge.latency.artifacts import StudentArtifact
    from dass_edge.latency.stats import fidelity_metrics
    from dass_edge.space import Arch, SearchSpace

    teacher = default_teacher_spec().replace(resolution=32)
    profile = load_profile("cpu")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
        work = Path(tmp)
        os.environ["DASS_EDGE_TABLES"] = str(work / "store")
        print("profiling the default space on cpu ...", file=sys.stderr)
        t0 = time.perf_counter()
        result = profile_device("cpu", teacher, 32, students=args.students)
        build_s = time.perf_counter() - t0
        table = result.table
        repeats = []
        for i in range(1, args.repeats):
            print(f"repeat {i + 1} of {args.repeats} ...", file=sys.stderr)
            os.environ["DASS_EDGE_TABLES"] = str(work / f"store{i}")
            t1 = time.perf_counter()
            again = profile_device("cpu", teacher, 32, students=args.students)
            repeats.append((time.perf_counter() - t1, again.table.fidelity))
        shipped = None
        if args.ship:
            dest = ROOT / "latency_tables"
            for old in dest.glob("cpu_*.json"):
                old.unlink()
            shipped = dest / result.path.name
            shutil.copyfile(result.path, shipped)

        space = SearchSpace(teacher)
        seen = {a["arch"]["depths"].__repr__() + repr(a["arch"]["widths"]) for a in table.fidelity["samples"]}
        held = [a for a in space.sample_many(args.heldout + 40, seed=1000)
                if repr(list(a.depths)) + repr([list(w) for w in a.widths]) not in seen][: args.heldout]
        files = {}
        for i, arch in enumerate(held):
            files[f"h{i}"] = StudentArtifact(space.to_spec(arch), 1, "onnxruntime", "fp32")(work / f"h{i}.onnx")
        controls = table.fidelity["samples"][: args.controls]
        for j, sample in enumerate(controls):
            arch = Arch.from_dict(sample["arch"])
            files[f"c{j}"] = StudentArtifact(space.to_spec(arch), 1, "onnxruntime", "fp32")(work / f"c{j}.onnx")
        exp = held[: args.exporter_students]
        for i, arch in enumerate(exp):
            _dynamo_export(space.to_spec(arch), work / f"d{i}.onnx")
            files[f"d{i}"] = work / f"d{i}.onnx"
        print(f"measuring {len(held)} held-out students and {len(exp)} dynamo exports ...", file=sys.stderr)
        measured = _measure_files(files, profile.fidelity_sessions)
    load_after = os.getloadavg()

    pred = [table.predict(space.to_spec(a))["p50_ms"] for a in held]
    meas = [measured[f"h{i}"]["p50_ms"] for i in range(len(held))]
    held_fid = fidelity_metrics(pred, meas)
    p90_pred = [table.predict(space.to_spec(a))["p90_ms"] for a in held]
    p90_fid = fidelity_metrics(p90_pred, [measured[f"h{i}"]["p90_ms"] for i in range(len(held))])
    ratios = [measured[f"d{i}"]["p50_ms"] / measured[f"h{i}"]["p50_ms"] for i in range(len(exp))]
    bias = statistics.median(m / p for m, p in zip(meas, pred))
    drift = statistics.median(measured[f"c{j}"]["p50_ms"] / c["p50_ms"] for j, c in enumerate(controls))
    adjusted = fidelity_metrics([p * drift for p in pred], meas)

    specs = [space.to_spec(a) for a in space.sample_many(2000, seed=3)]
    t0 = time.perf_counter()
    reps = 5
    for _ in range(reps):
        for s in specs:
            table.predict(s)
    per_s = reps * len(specs) / (time.perf_counter() - t0)

    fid, prov = table.fidelity, table.provenance
    unc, alls = fid["uncorrected"], fid["all_sessions"]
    rho_params = stats.spearmanr([s["weights_mb"] for s in fid["samples"]], [s["p50_ms"] for s in fid["samples"]])
    corr = table.correction
    terms = " + ".join(f"{c:.4g}·{f}" for c, f in zip(corr["p50"], corr["features"]))

    def pct(x: float) -> str:
        return f"{100 * x:.1f}%"

    n, h = fid["students"], len(held)
    table_rows = [
        ("figure", "value", "target"), ("---", "---:", "---:"),
        (f"full table, wall time (`profile_device`, incl. {n} fidelity students)", f"**{build_s:.0f} s**", "≤ 180 s"),
        (f"fidelity (leave-one-out, {n} students): within ±10% of the measured (undisturbed) median",
         f"**{pct(fid['within_10pct'])}**", "≥ 90%"),
        ("fidelity: RMSPE / max abs error", f"{pct(fid['rmspe'])} / {pct(fid['max_abs_pct_error'])}", ""),
        ("fidelity: Spearman", f"**{fid['spearman']:.3f}**", "≥ 0.95"),
        ("same, against the plain median of all sessions (disturbed ones included): within ±10% / RMSPE / Spearman",
         f"{pct(alls['within_10pct'])} / {pct(alls['rmspe'])} / {alls['spearman']:.3f}", ""),
        ("students' session spread (median of max/min session median)", f"{fid['session_spread']:.2f}", ""),
        ("uncorrected LUT sum: within ±10% / RMSPE / Spearman",
         f"{pct(unc['within_10pct'])} / {pct(unc['rmspe'])} / {unc['spearman']:.3f}", ""),
        (f"held-out ({h} new students): within ±10% / RMSPE / Spearman",
         f"**{pct(held_fid['within_10pct'])}** / {pct(held_fid['rmspe'])} / **{held_fid['spearman']:.3f}**",
         "≥ 90% / – / ≥ 0.95"),
        ("held-out: median measured / predicted", f"{bias:.3f}", ""),
        (f"drift: {len(controls)} fidelity students re-measured with the held-out ones, now / at profiling",
         f"{drift:.3f}", ""),
        ("held-out after dividing out that drift: within ±10% / RMSPE (diagnostic)",
         f"{pct(adjusted['within_10pct'])} / {pct(adjusted['rmspe'])}", ""),
        ("held-out p90: within ±10% / RMSPE", f"{pct(p90_fid['within_10pct'])} / {pct(p90_fid['rmspe'])}", ""),
        (f"dynamo-exported / profiler-graph end-to-end median ({len(exp)} students)",
         f"{statistics.median(ratios):.3f} (range {min(ratios):.3f}–{max(ratios):.3f})", "≈ 1"),
        ("`LatencyTable.predict` throughput", f"{per_s:,.0f} /s", "≥ 1,000 /s"),
    ]
    for i, (secs, f) in enumerate(repeats, start=2):
        table_rows.append((f"independent rebuild {i}: wall time; within ±10% / RMSPE / Spearman (leave-one-out)",
                           f"{secs:.0f} s; {pct(f['within_10pct'])} / {pct(f['rmspe'])} / {f['spearman']:.3f}", ""))
    rows = "\n".join("| " + " | ".join(r) + " |" for r in table_rows)
    body = f"""
- Table: device profile `cpu` ({prov['backend']} {prov['backend_version']}, {prov['precision']}, batch 1,
  {prov['threads']} thread), demo-teacher space ({'-'.join(map(str, teacher.widths))} widths,
  depths {'-'.join(map(str, teacher.depths))}, {teacher.num_classes} classes) at 32x32: **{len(table.entries)}
  entries** (stems, blocks, head) + per-call overhead model; measured on {prov['measured_on']}.
- Protocol: {profile.sessions} fresh sessions per block and {profile.fidelity_sessions} per student, interleaved in
  shuffled passes; warm-up {profile.warmup_s * 1e3:.0f} ms by time, {profile.iterations} timed calls per session.
  A model's median is its undisturbed median: sessions over 1.1x its fastest left out, then the lower quartile
  of the kept sessions' medians (other jobs only ever slow a session down); entries are added up by their p25;
  nice {prov['settings']['nice_in_effect']} (requested {profile.nice}). Per-call overhead
  {table.data['overhead']['p25_ms'] * 1e3:.1f} µs (p25) removed from every entry and added once.
- Conditions: shared machine, load average {load_before[0]:.1f} before / {load_after[0]:.1f} after (1-min; other
  sessions' training and tests were running).
{'- Shipped as `latency_tables/' + shipped.name + '`.' if shipped else ''}

{rows}

- Held out vs leave-one-out: the held-out students are measured a minute after the table, in a separate job; on
  this shared machine the whole level moves with other jobs' load (the drift row), ranks do not.
- p90 here is dominated by preemption: with other jobs on both cores a ~0.5 ms call is descheduled for a ~4 ms
  time slice every few calls, so p90/p50 of whole models reflects the co-tenants, not the model. Median figures
  are what the search constrains on.
- Correction (fit on relative error): median ≈ {terms}; p90 = median × {corr['p90_ratio']:.2f}.
- Spearman of weights (MB) vs measured median over the fidelity students: {rho_params.statistic:.2f} (the size
  term matters: stage-4 weights exceed the core's L2 inside a whole model, not in a block measured alone).
"""
    path = write_fragment("latency", "Latency tables (CPU, onnxruntime, 1 thread)", command, body, copy_to=args.out)
    print(path.read_text())
    return 0


def _one_profile(work: Path, device: str = "cpu") -> dict:
    """One fresh ``dass-edge profile --device DEVICE --json`` in its own process and table store."""
    import subprocess

    env = {**os.environ, "DASS_EDGE_TABLES": str(work / "store"), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "dass_edge.cli", "profile", "--device", device, "--json", "--out",
                           str(work / "T.json"), "--keep-records", str(work / "records.jsonl")],
                          env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"error: dass-edge profile failed: {proc.stderr.strip().splitlines()[-1:]}")
    summary = json.loads(proc.stdout)
    saved = json.loads((work / "T.json").read_text())
    fid = saved["fidelity"]
    gate = fid.get("gate") or {}
    return {"wall_s": round(wall, 1), "load_start": round(load, 2), "load_end": round(os.getloadavg()[0], 2),
            "first": gate.get("first"), "final": {k: fid.get(k) for k in ("within_10pct", "rmspe", "spearman")},
            "fidelity_ok": fid.get("fidelity_ok"), "attempts": gate.get("attempts"),
            "remeasured": gate.get("remeasured"), "gate_s": gate.get("seconds"),
            "pairs": summary["measured"], "warned": "warning: " in proc.stderr,
            "session_spread": fid.get("session_spread"),
            "disturbance": _disturbance(work / "records.jsonl")}


def _first_pass(records: Path) -> list[dict]:
    """The first record of each (model, session) in a kept journal: the first measurement, before the fidelity
    gate re-measured some of the same pairs."""
    recs, seen = [], set()
    for line in records.read_text().splitlines():
        r = json.loads(line) if line.strip() else None
        if r is not None and (r["id"], r["round"]) not in seen:
            seen.add((r["id"], r["round"]))
            recs.append(r)
    return recs


def _disturbance(records: Path, slow: float = 1.10, window_s: float = 10.0) -> dict:
    """How the first measurement (each model and session's first record: the gate re-measures the same pairs
    later) was disturbed: the share of
    sessions whose median is over ``slow`` x their model's undisturbed level (lower quartile of its session
    medians), for blocks and for whole students, and per ``window_s`` window of time (a burst shows as a window
    where most sessions are slow; scattered preemption as a low share everywhere)."""
    import numpy as np

    recs = _first_pass(records)
    by_model: dict[str, list[tuple[float, float]]] = {}
    for r in recs:
        by_model.setdefault(r["id"], []).append((float(r.get("t") or 0.0), float(np.median(r["us"]))))
    t0 = min((t for v in by_model.values() for t, _ in v), default=0.0)
    rows = []  # (time since start, ratio to the model's level, is a whole student)
    for mid, v in by_model.items():
        level = float(np.percentile([m for _, m in v], 25))
        rows += [(t - t0, m / level, mid.startswith("student")) for t, m in v]
    if not rows:
        return {}
    t, ratio, student = (np.array(x) for x in zip(*rows))
    bins = (t // window_s).astype(int)
    windows = [float(np.mean(ratio[bins == b] > slow)) for b in range(bins.max() + 1) if (bins == b).any()]
    return {"sessions": len(rows), "slow_share": round(float(np.mean(ratio > slow)), 3),
            "slow_share_blocks": round(float(np.mean(ratio[~student] > slow)), 3) if (~student).any() else None,
            "slow_share_students": round(float(np.mean(ratio[student] > slow)), 3) if student.any() else None,
            "worst_window": round(max(windows), 3), "windows": [round(w, 2) for w in windows]}


def stability(n: int, command: str, keep: Path | None = None) -> int:
    """N consecutive fresh profiles of this CPU: fidelity on their own, the gate's work, wall time (``keep``: copy
    each profile's table and raw records there, numbered after any already there)."""
    from dass_edge.latency import load_profile
    from dass_edge.latency.gate import FidelityTarget

    profile = load_profile("cpu")
    target = FidelityTarget(profile.target_within_10pct, profile.target_spearman)
    runs: list[dict] = []
    jsonl = RESULTS / "latency_stability.json"
    for i in range(n):
        with tempfile.TemporaryDirectory(prefix="bench-stability-") as tmp:
            runs.append(_one_profile(Path(tmp)))
            if keep is not None:
                keep.mkdir(parents=True, exist_ok=True)
                k = 1 + max((int(p.stem[1:]) for p in keep.glob("R*.jsonl")), default=0)
                shutil.copyfile(Path(tmp) / "T.json", keep / f"T{k}.json")
                shutil.copyfile(Path(tmp) / "records.jsonl", keep / f"R{k}.jsonl")
        r = runs[-1]
        print(f"profile {i + 1}/{n}: {r['wall_s']:.0f} s, load {r['load_start']:.1f}; on its own "
              f"{100 * r['first']['within_10pct']:.0f}% / {r['first']['spearman']:.3f}; final "
              f"{100 * r['final']['within_10pct']:.0f}% / {r['final']['spearman']:.3f}, ok={r['fidelity_ok']}",
              file=sys.stderr)
        jsonl.write_text(json.dumps({"command": command, "requested": n, "runs": runs}, indent=1) + "\n")
        _stability_fragment(runs, n, command, target, profile)
    print((RESULTS / "latency_stability.md").read_text())
    return 0


#: Session tolerances compared offline: None keeps every session (the statistic before session 8).
TOLERANCES = (None, 1.05, 1.10, 1.20)


def reassemble(folder: Path, command: str) -> int:
    """The first measurement of each kept profile, re-assembled into a table under each of :data:`TOLERANCES`
    (sessions over that many times the model's fastest left out): the same raw calls, so the comparison is
    paired and costs no machine time."""
    import numpy as np

    import dass_edge.latency.profiler as profiler
    import dass_edge.latency.stats as latency_stats
    from dass_edge.latency import load_profile, teacher_spec
    from dass_edge.latency.gate import FidelityTarget

    pairs = sorted(folder.glob("R*.jsonl"), key=lambda p: int(p.stem[1:]))
    if not pairs:
        raise SystemExit(f"error: no R<i>.jsonl records in {folder} (dass-edge profile --keep-records)")
    profile = load_profile("cpu")
    target = FidelityTarget(profile.target_within_10pct, profile.target_spearman)
    plan = profiler._plan("cpu", teacher_spec(None), None, None, True, None, 0)
    saved = latency_stats.UNDISTURBED_TOLERANCE
    results: dict[str, list[dict]] = {}
    try:
        for rec in pairs:
            table = json.loads((folder / f"T{rec.stem[1:]}.json").read_text())
            with tempfile.TemporaryDirectory() as tmp:
                first = Path(tmp) / "first.jsonl"  # each (model, session)'s first record: the gate re-measures later
                first.write_text("".join(json.dumps(r) + "\n" for r in _first_pass(rec)))
                for tol in TOLERANCES:
                    latency_stats.UNDISTURBED_TOLERANCE = math.inf if tol is None else tol
                    journal = profiler._Journal(first)
                    data = profiler._assemble(plan, journal, table["provenance"]["device"], {}, None, 0.0, 0)
                    journal.close()
                    results.setdefault(str(tol), []).append(data["fidelity"])
    finally:
        latency_stats.UNDISTURBED_TOLERANCE = saved
    rows = ["| sessions kept | profiles at target | within ±10%: median (min) | Spearman: median (min) "
            "| RMSPE: median |",
            "| --- | ---: | --- | --- | ---: |"]
    for tol in TOLERANCES:
        fids = results[str(tol)]
        w, sp, e = ([f[k] for f in fids] for k in ("within_10pct", "spearman", "rmspe"))
        label = "every session (before session 8)" if tol is None else f"within {tol:.2f}x the fastest"
        rows.append(f"| {label} | **{sum(target.met(f) for f in fids)} of {len(fids)}** | {100 * np.median(w):.0f}% "
                    f"({100 * min(w):.0f}%) | {np.median(sp):.3f} ({min(sp):.3f}) | {100 * np.median(e):.1f}% |")
    body = f"""
- {len(pairs)} fresh `dass-edge profile --device cpu --keep-records R<i>.jsonl` runs, one after the other on this
  idle VM (database build paused); each one's first measurement (before the fidelity gate) re-assembled into a
  table with each rule, leave-one-out fidelity on its 30 students as in `profile`. Same calls in every row.

{chr(10).join(rows)}
"""
    write_fragment("latency_reassemble", "Latency tables: which sessions count (offline, same measurements)",
                   command, body)
    print((RESULTS / "latency_reassemble.md").read_text())
    return 0


def _variant_profile(key: str, value: str, path: Path) -> Path:
    """A copy of the shipped ``cpu`` profile with ``measurement.key`` set to ``value`` (YAML-parsed)."""
    import yaml

    data = yaml.safe_load((ROOT / "profiles" / "cpu.yaml").read_text())
    data["measurement"][key] = yaml.safe_load(value)
    data.update(name="cpu-variant", description=f"cpu with measurement.{key}: {value}")
    path.write_text(yaml.safe_dump(data))
    return path


def stability_ab(pairs: int, change: str, command: str) -> int:
    """``pairs`` A/B pairs of fresh profiles, A (cpu as shipped) and B (one measurement key changed) alternating."""
    from dass_edge.latency import load_profile
    from dass_edge.latency.gate import FidelityTarget

    key, sep, value = change.partition("=")
    if not sep or not key:
        raise SystemExit("error: --ab takes KEY=VALUE, e.g. --ab pin_core=true")
    profile = load_profile("cpu")
    target = FidelityTarget(profile.target_within_10pct, profile.target_spearman)
    runs: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-ab-") as keep:
        variant = str(_variant_profile(key, value, Path(keep) / "variant.yaml"))
        load_profile(variant)  # a bad key or value fails here, before any measurement
        for i in range(2 * pairs):
            arm = "AB"[i % 2]
            with tempfile.TemporaryDirectory(prefix="bench-stability-") as tmp:
                runs.append({"arm": arm, **_one_profile(Path(tmp), "cpu" if arm == "A" else variant)})
            r = runs[-1]
            print(f"{arm} {i // 2 + 1}/{pairs}: {r['wall_s']:.0f} s, load {r['load_start']:.1f}; on its own "
                  f"{100 * r['first']['within_10pct']:.0f}% / {r['first']['spearman']:.3f}, ok={r['fidelity_ok']}",
                  file=sys.stderr)
            (RESULTS / "latency_stability_ab.json").write_text(
                json.dumps({"command": command, "pairs": pairs, "change": change, "runs": runs}, indent=1) + "\n")
            _ab_fragment(runs, change, command, target)
    print((RESULTS / "latency_stability_ab.md").read_text())
    return 0


def _ab_fragment(runs: list[dict], change: str, command: str, target) -> Path:
    rows = ["| arm | profiles | on their own at target | within ±10% on their own: median (min–max) | Spearman on "
            "their own: median (min) | gate re-measured | left marked | wall s: median |",
            "| --- | ---: | ---: | --- | --- | ---: | ---: | ---: |"]
    for arm, label in (("A", "A: cpu as shipped"), ("B", f"B: measurement.{change}")):
        rs = [r for r in runs if r["arm"] == arm]
        if not rs:
            continue
        w = [r["first"]["within_10pct"] for r in rs]
        sp = [r["first"]["spearman"] for r in rs]
        own = sum(target.met({"students": 1, **r["first"]}) for r in rs)
        rows.append(f"| {label} | {len(rs)} | **{own}** | {100 * statistics.median(w):.0f}% ({100 * min(w):.0f}%–"
                    f"{100 * max(w):.0f}%) | {statistics.median(sp):.3f} ({min(sp):.3f}) | "
                    f"{sum(1 for r in rs if r['attempts'])} | {sum(1 for r in rs if r['fidelity_ok'] is False)} | "
                    f"{statistics.median(r['wall_s'] for r in rs):.0f} |")
    seq = ", ".join(f"{r['arm']} {100 * r['first']['within_10pct']:.0f}%" for r in runs)
    peak = max(max(r["load_start"], r["load_end"]) for r in runs)
    body = f"""
- Fresh `dass-edge profile --json` runs in their own process and table store, alternating A and B so both arms
  see the same hours of this machine; "on their own" is before the fidelity gate (target ≥
  {100 * target.within_10pct:.0f}% within ±10% and Spearman ≥ {target.spearman:.2f}). Peak 1-minute load {peak:.1f}.

{chr(10).join(rows)}

- In order: {seq}.
"""
    return write_fragment("latency_stability_ab", f"Latency tables: A/B of measurement.{change} over fresh profiles",
                          command, body)


def _stability_fragment(runs: list[dict], n: int, command: str, target, profile) -> Path:
    def pct(x: float) -> str:
        return f"{100 * x:.0f}%"

    own = [target.met({"students": 1, **r["first"]}) for r in runs]
    repeated = [r for r in runs if r["attempts"]]
    unmarked_below = [r for r in runs
                      if r["fidelity_ok"] is not False and not target.met({"students": 1, **r["final"]})]
    walls = [r["wall_s"] for r in runs]
    rows = ["| # | wall s | load (1-min) start / end | on its own: within ±10% / Spearman | slow sessions: blocks / "
            "students / worst 10 s | gate: attempts, pairs re-measured, s | final: within ±10% / RMSPE / Spearman "
            "| fidelity_ok |",
            "| ---: | ---: | --- | --- | --- | --- | --- | --- |"]
    for i, r in enumerate(runs, 1):
        f, g, d = r["final"], r["first"], r.get("disturbance") or {}
        work = f"{r['attempts']}, {r['remeasured']}, {r['gate_s']:.0f}" if r["attempts"] else "–"
        slow = (f"{pct(d['slow_share_blocks'])} / {pct(d['slow_share_students'])} / {pct(d['worst_window'])}"
                if d.get("slow_share_students") is not None else "–")
        rows.append(f"| {i} | {r['wall_s']:.0f} | {r['load_start']:.1f} / {r['load_end']:.1f} | "
                    f"{pct(g['within_10pct'])} / {g['spearman']:.3f} | {slow} | {work} | {pct(f['within_10pct'])} / "
                    f"{100 * f['rmspe']:.1f}% / {f['spearman']:.3f} | {r['fidelity_ok']} |")
    first_w = [r["first"]["within_10pct"] for r in runs]
    final_w = [r["final"]["within_10pct"] for r in runs]
    summary = [
        ("figure", "value", "target (issue 18)"), ("---", "---:", "---:"),
        ("profiles run (consecutive, fresh)", f"{len(runs)} of {n} requested", "10"),
        (f"reached the target on their own (≥ {pct(target.within_10pct)} within ±10% and Spearman ≥ "
         f"{target.spearman:.2f}, before the gate)", f"**{sum(own)} of {len(runs)}**", "≥ 9 of 10"),
        ("the gate re-measured / recovered / left marked `fidelity_ok: false`",
         f"{len(repeated)} / {sum(1 for r in repeated if r['fidelity_ok'])} / "
         f"{sum(1 for r in runs if r['fidelity_ok'] is False)}", ""),
        ("saved below target without the mark", f"**{len(unmarked_below)}**", "0"),
        ("within ±10% on their own: median (min–max)",
         f"{pct(statistics.median(first_w))} ({pct(min(first_w))}–{pct(max(first_w))})", ""),
        ("within ±10% as saved: median (min–max)",
         f"{pct(statistics.median(final_w))} ({pct(min(final_w))}–{pct(max(final_w))})", ""),
        ("wall time per profile: median (min–max)", f"**{statistics.median(walls):.0f} s** "
         f"({min(walls):.0f}–{max(walls):.0f})", "≤ 120 s"),
    ]
    summary += [(f"for context: {name}, within ±10%", f"{100 * share:.1f}%", "") for name, share in PUBLISHED]
    table = "\n".join("| " + " | ".join(r) + " |" for r in summary)
    peak = max(max(r["load_start"], r["load_end"]) for r in runs)
    # A profile process is itself one runnable task: above ~2 on 2 cores, other jobs shared the machine.
    load_note = (f"other jobs shared the 2 cores (peak 1-minute load {peak:.1f}), so this is the shared-machine "
                 "case the gate exists for." if peak > 2.5 else
                 f"the machine was otherwise idle (peak 1-minute load {peak:.1f}: the profile itself).")
    body = f"""
- Each profile: `dass-edge profile --device cpu --json` in its own process and an empty table store (the demo
  teacher's space at 32 px, {profile.fidelity_students} fidelity students, leave-one-out), one after the other; the
  gate's budget is {profile.remeasure_s:.0f} s of re-measurement (profile `cpu`, `fidelity_target`).
- Load averages are the machine's 1-minute load when each profile started and ended; {load_note}

{table}

{chr(10).join(rows)}

- "Slow sessions": in the first measurement, the share of sessions whose median is over 1.1x their model's
  undisturbed level (lower quartile of its session medians), for blocks, for whole students, and in the worst
  10-second window (`--keep-records` keeps the raw measurements this is read from).
- "On its own" is the table as first measured; the gate then re-measured the students predicted worst (with their
  blocks) and sessions slower than their model's undisturbed level, and kept the best table. The published figures
  are other systems on their own devices and model sets, not measured here; they set the bar for "trustworthy".
"""
    return write_fragment("latency_stability", "Latency tables: stability over consecutive fresh profiles (CPU)",
                          command, body)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Benchmark: few-shot latency tables transferred from the CPU onnxruntime FP32 table vs full tables.

Targets (issue 15): for each target below, with N = 20, >= 90% of >= 30 held-out students within +-10% of
their measured latency and Spearman >= 0.95; few-shot profiling wall time vs the full table's.

    python benchmarks/bench_fewshot.py [--ns 5,10,20,40] [--students 40] [--targets int8,torch,threads2]

1. Source: the ``cpu`` profile's full table (onnxruntime FP32, 1 thread), measured in this run.
2. For each target, (a) onnxruntime INT8 Q/DQ, (b) torch CPU (``cpu-torch``), (c) onnxruntime with 2
   threads: its full table (``profile_device``, ``--students`` random fidelity students measured end to
   end), then ``profile_fewshot`` with each N (the real command's library call, timed; held-out check
   off). Every transferred table is scored on the full run's students that were not among its N.
3. Reference row ``source only``: the source table's corrected prediction times one median ratio (fitted on
   the N=20 students), i.e. what a single global scale gives.

Writes ``benchmarks/results/fewshot.md``, and ``fewshot.json`` (per-student measured medians) plus every table
into the work folder, so ``--rescore --work DIR`` scores a changed transfer model without measuring again.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import write_fragment  # noqa: E402

TARGETS = {"int8": "onnxruntime INT8 Q/DQ (1 thread)", "torch": "torch CPU eager (cpu-torch)",
           "threads2": "onnxruntime FP32, 2 threads"}


def target_profile(name: str, rounds: int | None = None):
    """The target's profile (``rounds``: its fidelity rounds per student instead of the profile's)."""
    from dass_edge.latency import load_profile

    cpu = load_profile("cpu")
    if name == "int8":
        profile = dataclasses.replace(cpu, name="cpu-int8", precision="int8", description=TARGETS[name])
    elif name == "threads2":
        profile = dataclasses.replace(cpu, name="cpu-t2", threads=2, description=TARGETS[name])
    else:
        profile = load_profile("cpu-torch")
    return profile if rounds is None else dataclasses.replace(profile, fidelity_sessions=rounds)


def _score_row(src, space, row: dict) -> None:
    """Fit each N's measured students with the current transfer code and score it on the held-out students.

    The prediction is the transferred table's own (``transfer_table`` + ``LatencyTable.predict``), so this
    equals what ``profile_fewshot`` wrote; rescoring after a change to the fit needs no new measurement.
    Also scores one global ratio on the source's corrected prediction (fitted on the same N=20 students).
    """
    import numpy as np

    from dass_edge.latency import LatencyTable
    from dass_edge.latency.fewshot import fit_transfer, transfer_table
    from dass_edge.latency.stats import fidelity_metrics
    from dass_edge.space import Arch

    def specs(samples):
        return [space.to_spec(Arch.from_dict(s["arch"])) for s in samples]

    for f in row["fewshot"]:
        fit_specs, y = specs(f["fit_p50_ms"]), [s["p50_ms"] for s in f["fit_p50_ms"]]
        fit = fit_transfer(src, fit_specs, y)
        mapped = transfer_table(src, fit)
        table = LatencyTable({**src.data, "entries": mapped["entries"], "overhead": mapped["overhead"],
                              "correction": {"features": ["lut_ms", "const"], "p50": [1.0, mapped["const_ms"]],
                                             "p90_ratio": 1.0}})
        fitted = {json.dumps(s["arch"], sort_keys=True) for s in f["fit_p50_ms"]}
        held = [s for s in row["heldout_p50_ms"] if json.dumps(s["arch"], sort_keys=True) not in fitted]
        pred = [table.predict(sp)["p50_ms"] for sp in specs(held)]
        f.update({"students": len(held), "ridge": fit.lam, **fidelity_metrics(pred, [s["p50_ms"] for s in held])})
        if f["n"] == 20:
            ratio = float(np.median([v / src.predict(sp)["p50_ms"] for v, sp in zip(y, fit_specs)]))
            row["global_ratio"] = {"ratio": ratio, "students": len(held), **fidelity_metrics(
                [ratio * src.predict(sp)["p50_ms"] for sp in specs(held)], [s["p50_ms"] for s in held])}


def _full(profile, teacher, path: Path, students: int):
    """The profile's full table at ``path``: measured now, or the one an interrupted run left there."""
    from dass_edge.latency import LatencyTable, profile_device

    if path.is_file():
        return LatencyTable.load(path)
    return profile_device(profile, teacher, 32, out=path, students=students).table


def _row(name: str, full, fewshot: dict) -> dict:
    """One target's measurements: the full table's students (held out) and each N's fit students, with times."""
    return {"label": TARGETS[name], "full_s": full.provenance["elapsed_s"], "full_fidelity": {
        k: full.fidelity.get(k) for k in ("students", "within_10pct", "rmspe", "spearman")},
        "heldout_p50_ms": [{"arch": s["arch"], "p50_ms": s["p50_ms"]} for s in full.fidelity["samples"]],
        "fewshot": [{"n": n, "fit_s": t.provenance["elapsed_s"], "fit_p50_ms": [
            {"arch": s["arch"], "p50_ms": s["p50_ms"]} for s in t.data["transferred"]["fit_samples"]]}
            for n, t in sorted(fewshot.items())]}


def _rebuild(work: Path, space, ns: list[int], targets: list[str]) -> dict:
    """The report from the tables a run left in ``work`` (every target with its full table and the few-shot
    tables of the Ns that finished), scored with the current transfer code: nothing is measured again.
    A ``<target>-self20.json`` there (``dass-edge profile --few-shot 20 --students 30``: fit and held-out
    students measured in one job) adds the command's own held-out figures."""
    from dass_edge.latency import LatencyTable

    src = LatencyTable.load(work / "source.json")
    report: dict = {"source": {"elapsed_s": src.provenance["elapsed_s"], "fidelity": {
        k: src.fidelity.get(k) for k in ("students", "within_10pct", "rmspe", "spearman")}}, "targets": {},
        "load_start": src.provenance["device"]["load_average"], "load_end": list(os.getloadavg()),
        "rescored_from": str(work)}
    for name in targets:
        few = {n: work / f"{name}-n{n}.json" for n in ns if (work / f"{name}-n{n}.json").is_file()}
        if not (work / f"{name}-full.json").is_file() or not few:
            report["targets_missing"] = report.get("targets_missing", []) + [name]
            continue
        row = _row(name, LatencyTable.load(work / f"{name}-full.json"),
                   {n: LatencyTable.load(p) for n, p in few.items()})
        _score_row(src, space, row)
        if (work / f"{name}-self20.json").is_file():  # refitted too: its fit and held-out students are stored
            t = LatencyTable.load(work / f"{name}-self20.json")
            own = {"n": 20, "fit_s": t.provenance["elapsed_s"], "fit_p50_ms": t.data["transferred"]["fit_samples"]}
            _score_row(src, space, {"fewshot": [own], "heldout_p50_ms": t.fidelity["samples"]})
            row["self_check"] = {"elapsed_s": own["fit_s"], **{k: own[k] for k in
                                                              ("students", "within_10pct", "rmspe", "spearman")}}
        report["targets"][name] = row
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ns", default="5,10,20,40")
    ap.add_argument("--students", type=int, default=40)
    ap.add_argument("--targets", default="int8,torch,threads2")
    ap.add_argument("--rescore", action="store_true", help="Refit and rescore benchmarks/results/fewshot.json "
                    "with the current transfer code (needs --work with the source table); measures nothing.")
    ap.add_argument("--work", default=None, help="Folder for the tables; full tables already there are reused "
                    "(an interrupted run resumes), so their wall times are those of the run that measured them.")
    ap.add_argument("--one-job", type=int, default=0, metavar="H",
                    help="Instead: for each target and N, `profile --few-shot N --students H` as a library call, "
                         "fit and H held-out students measured in one interleaved job (no drift between them); "
                         "writes benchmarks/results/fewshot_one_job.md.")
    ap.add_argument("--rescore-one-job", action="store_true",
                    help="Refit the --one-job tables in --work (their fit and held-out students are stored) with the "
                         "current transfer code and print the figures; measures and writes nothing.")
    ap.add_argument("--fit-students", choices=("spread", "random"), default="spread",
                    help="With --one-job: the command's farthest-point picks (spread, what it ships) or random "
                         "students of the space (an A/B of the selection; the library is not changed).")
    ap.add_argument("--rounds-ab", default=None, metavar="R1,R2",
                    help="Instead: N = 20 one-job runs with R1 and with R2 rounds per student, twice each "
                         "(writes benchmarks/results/fewshot_rounds_ab.md).")
    args = ap.parse_args()
    from dass_edge.latency import default_teacher_spec, load_profile
    from dass_edge.latency.fewshot import profile_fewshot
    from dass_edge.space import SearchSpace

    ns = [int(n) for n in args.ns.split(",")]
    teacher = default_teacher_spec().replace(resolution=32)
    space = SearchSpace(teacher)
    tmp = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench-fewshot-"))
    tmp.mkdir(parents=True, exist_ok=True)
    if args.rescore_one_job:
        _rescore_one_job(tmp, space, ns, args.targets.split(","))
        return
    if args.rescore:
        _write(_rebuild(tmp, space, ns, args.targets.split(",")),
               "OMP_NUM_THREADS=1 python benchmarks/bench_fewshot.py " + " ".join(sys.argv[1:]), tmp)
        return
    load0 = os.getloadavg()
    t = time.perf_counter()
    src = _full(load_profile("cpu"), teacher, tmp / "source.json", 30)
    if args.rounds_ab:
        _rounds_ab(src, teacher, args.targets.split(","), [int(r) for r in args.rounds_ab.split(",")],
                   args.one_job or 30, tmp, load0)
        return
    if args.one_job:
        if args.fit_students == "random":
            import dass_edge.latency.fewshot as fewshot

            fewshot.spanning_students = lambda space, n, seed=0, pool=0: space.sample_many(n, seed=seed)
        _one_job(src, teacher, ns, args.targets.split(","), args.one_job, tmp, load0, args.fit_students)
        return
    print(f"source: {time.perf_counter() - t:.0f} s, fidelity {src.fidelity['within_10pct']:.2f}/"
          f"{src.fidelity['spearman']:.3f}", flush=True)
    report: dict = {"source": {"elapsed_s": src.provenance["elapsed_s"], "fidelity": {
        k: src.fidelity.get(k) for k in ("students", "within_10pct", "rmspe", "spearman")}}, "targets": {},
        "load_start": list(load0)}
    for name in args.targets.split(","):
        profile = target_profile(name)
        full = _full(profile, teacher, tmp / f"{name}-full.json", args.students)
        samples = full.fidelity["samples"]
        row: dict = {"label": TARGETS[name], "full_s": full.provenance["elapsed_s"], "full_fidelity": {
            k: full.fidelity.get(k) for k in ("students", "within_10pct", "rmspe", "spearman")},
            "heldout_p50_ms": [{"arch": s["arch"], "p50_ms": s["p50_ms"]} for s in samples], "fewshot": []}
        print(f"{name}: full table {row['full_s']:.0f} s", flush=True)
        for n in ns:
            res = profile_fewshot(profile, teacher, n, 32, source=src, out=tmp / f"{name}-n{n}.json", heldout=0)
            tr = res.table.data["transferred"]
            row["fewshot"].append({"n": n, "fit_s": res.measure_s, "fit_p50_ms": [
                {"arch": s["arch"], "p50_ms": s["p50_ms"]} for s in tr["fit_samples"]]})
        _score_row(src, space, row)
        for f in row["fewshot"]:
            print(f"  N={f['n']}: {f['fit_s']:.0f} s, {f['within_10pct']:.2f} within, Spearman {f['spearman']:.3f}",
                  flush=True)
        report["targets"][name] = row
    report["load_end"] = list(os.getloadavg())
    _write(report, "OMP_NUM_THREADS=1 python benchmarks/bench_fewshot.py " + " ".join(sys.argv[1:]), tmp)


def _one_job(src, teacher, ns: list[int], targets: list[str], heldout: int, work: Path, load0,
             selection: str = "spread") -> None:
    """Each target and N: the command's own held-out check, fit and held-out students in one job.

    The main mode scores fits against students measured in another job minutes earlier; on a VM whose speed
    drifts between jobs that mixes drift into the transfer's error. Here both come from one interleaved job.
    """
    from dass_edge.latency.fewshot import profile_fewshot

    rows = []
    for name in targets:
        profile = target_profile(name)
        for n in ns:
            res = profile_fewshot(profile, teacher, n, 32, source=src, out=work / f"{name}-onejob{n}-{selection}.json",
                                  heldout=heldout)
            f = res.table.fidelity
            rows.append((TARGETS[name], n, f["students"], f["within_10pct"], f["rmspe"], f["spearman"], res.elapsed_s))
            print(f"{name} N={n}: {res.elapsed_s:.0f} s, {f['within_10pct']:.2f} within, Spearman {f['spearman']:.3f}",
                  flush=True)
    lines = [f"`profile_fewshot(..., heldout={heldout})` per target and N: its N fit students and {heldout} random "
             "held-out students measured in one interleaved job on the target, then the transferred table scored on "
             f"the held-out ones. Source: the `cpu` full table in `{work.name}`. Load average at start "
             f"{', '.join(f'{v:.1f}' for v in load0)}, at end {', '.join(f'{v:.1f}' for v in os.getloadavg())}.", "",
             "| target | N | held-out | within ±10% | RMSPE | Spearman | wall time (fit + held-out) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {t} | {n} | {h} | {100 * w:.0f}% | {100 * r:.1f}% | {sp:.3f} | {e:.0f} s |"
              for t, n, h, w, r, sp, e in rows]
    met = [f"{t}: {'met' if w >= 0.9 and sp >= 0.95 else 'NOT met'} ({100 * w:.0f}%, {sp:.3f})"
           for t, n, h, w, r, sp, e in rows if n == 20]
    lines += ["", "Targets (N=20: >= 90% within ±10%, Spearman >= 0.95): " + "; ".join(met) + "."]
    how = ("the command's farthest-point picks" if selection == "spread" else
           "random students of the space (a benchmark A/B; the command still picks farthest-point)")
    lines += ["", f"Fit students: {selection}, {how}."]
    write_fragment(f"fewshot_one_job{'' if selection == 'spread' else '_' + selection}",
                   f"Few-shot latency tables: fit and held-out measured in one job ({selection} fit students)",
                   "OMP_NUM_THREADS=1 python benchmarks/bench_fewshot.py " + " ".join(sys.argv[1:]), "\n".join(lines))


def _rounds_ab(src, teacher, targets: list[str], rounds: list[int], heldout: int, work: Path, load0) -> None:
    """N = 20 one-job runs with each number of rounds per student, twice, alternating: the transfer's held-out
    figures per job, and how well the two jobs' measurements of the same held-out students agree (the floor a
    held-out Spearman can reach at that many rounds)."""
    from scipy.stats import spearmanr

    from dass_edge.latency.fewshot import profile_fewshot

    lines = ["| target | rounds per student | job | within ±10% | Spearman | wall time | "
             "the two jobs' held-out medians: Spearman |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name in targets:
        got: dict[int, list] = {r: [] for r in rounds}
        for job in (1, 2):
            for r in rounds:
                res = profile_fewshot(target_profile(name, r), teacher, 20, 32, source=src, heldout=heldout,
                                      out=work / f"{name}-r{r}-job{job}.json")
                got[r].append(res)
                f = res.table.fidelity
                print(f"{name} rounds={r} job {job}: {f['within_10pct']:.2f} within, Spearman {f['spearman']:.3f}, "
                      f"{res.elapsed_s:.0f} s", flush=True)
        for r in rounds:
            a, b = ([x["p50_ms"] for x in res.table.fidelity["samples"]] for res in got[r])
            floor = float(spearmanr(a, b).statistic)
            for job, res in enumerate(got[r], start=1):
                f = res.table.fidelity
                head = f"| {TARGETS[name]} | {r} |" if job == 1 else "| | |"
                lines.append(f"{head} {job} | {100 * f['within_10pct']:.0f}% | {f['spearman']:.3f} | "
                             f"{res.elapsed_s:.0f} s | {f'{floor:.3f}' if job == 1 else ''} |")
    body = (f"N = 20 fit students and {heldout} held-out students (the same ones in every job) per one-job run of "
            "`profile_fewshot`, with the profile's 15 rounds per student and with more; jobs alternate between the "
            f"settings. Source: the `cpu` table in `{work.name}`. Load average at start "
            f"{', '.join(f'{v:.1f}' for v in load0)}, at end {', '.join(f'{v:.1f}' for v in os.getloadavg())}.\n\n"
            + "\n".join(lines) + "\n")
    write_fragment("fewshot_rounds_ab", "Few-shot latency tables: rounds per student (A/B)",
                   "OMP_NUM_THREADS=1 python benchmarks/bench_fewshot.py " + " ".join(sys.argv[1:]), body)
    print(body)


def _rescore_one_job(work: Path, space, ns: list[int], targets: list[str]) -> None:
    """Print each stored one-job table's figures refitted with the current code (a change to the transfer
    model scored on the same measurements: the table's fit students for the fit, its held-out ones to score)."""
    from dass_edge.latency import LatencyTable

    src = LatencyTable.load(work / "source.json")
    print("| target | fit students | N | held-out | within ±10% | RMSPE | Spearman | ridge |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name in targets:
        for selection in ("spread", "random"):
            for n in ns:
                found = [work / f"{name}-onejob{n}{tail}.json" for tail in
                         ((f"-{selection}", "") if selection == "spread" else (f"-{selection}",))]
                path = next((f for f in found if f.is_file()), None)
                if path is None:
                    continue
                t = LatencyTable.load(path)
                f = {"n": n, "fit_p50_ms": t.data["transferred"]["fit_samples"]}
                _score_row(src, space, {"fewshot": [f], "heldout_p50_ms": t.fidelity["samples"]})
                print(f"| {TARGETS[name]} | {selection} | {n} | {f['students']} | {100 * f['within_10pct']:.0f}% | "
                      f"{100 * f['rmspe']:.1f}% | {f['spearman']:.3f} | {f['ridge']:g} |")
        for path in sorted(work.glob(f"{name}-r*-job*.json")):  # --rounds-ab jobs (N = 20, spread)
            t = LatencyTable.load(path)
            f = {"n": 20, "fit_p50_ms": t.data["transferred"]["fit_samples"]}
            _score_row(src, space, {"fewshot": [f], "heldout_p50_ms": t.fidelity["samples"]})
            print(f"| {TARGETS[name]} | spread ({path.stem}) | 20 | {f['students']} | {100 * f['within_10pct']:.0f}% | "
                  f"{100 * f['rmspe']:.1f}% | {f['spearman']:.3f} | {f['ridge']:g} |")


def _write(report: dict, command: str, work: Path) -> None:
    """The markdown fragment into benchmarks/results/; the per-student figures (~100 KB) stay in ``work``."""
    (work / "fewshot.json").write_text(json.dumps(report, indent=1))
    write_fragment("fewshot", "Few-shot latency tables (transfer from the CPU FP32 table)", command,
                   _markdown(report))


def _markdown(report: dict) -> str:
    src = report["source"]
    lines = [f"Source: `cpu` profile full table (onnxruntime FP32, 1 thread) measured in this run in "
             f"{src['elapsed_s']:.0f} s; its own fidelity {100 * src['fidelity']['within_10pct']:.0f}% within ±10%, "
             f"Spearman {src['fidelity']['spearman']:.3f}. Load average at start "
             f"{', '.join(f'{v:.1f}' for v in report['load_start'])}, at end "
             f"{', '.join(f'{v:.1f}' for v in report['load_end'])} (2 cores).", "",
             "Held-out: the full run's random students not among the N fit students, measured on the target "
             "(in another job, minutes apart). "
             "Wall time: `profile_fewshot` (model files, N students measured, fit) vs `profile_device` (full table "
             "with its fidelity students).", "",
             "| target | N | held-out | within ±10% | RMSPE | Spearman | wall time | full table |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in report["targets"].values():
        for f in row["fewshot"]:
            lines.append(f"| {row['label']} | {f['n']} | {f['students']} | {100 * f['within_10pct']:.0f}% | "
                         f"{100 * f['rmspe']:.1f}% | {f['spearman']:.3f} | {f['fit_s']:.0f} s | "
                         f"{row['full_s']:.0f} s |")
        g = row.get("global_ratio")
        if g:
            lines.append(f"| {row['label']}: one global ratio (N=20) | 20 | {g['students']} | "
                         f"{100 * g['within_10pct']:.0f}% | {100 * g['rmspe']:.1f}% | {g['spearman']:.3f} | | |")
        sc = row.get("self_check")
        if sc:
            lines.append(f"| {row['label']}: `profile --few-shot 20 --students {sc['students']}` (held-out measured in "
                         f"the same job) | 20 | {sc['students']} | {100 * sc['within_10pct']:.0f}% | "
                         f"{100 * sc['rmspe']:.1f}% | {sc['spearman']:.3f} | {sc['elapsed_s']:.0f} s | |")
        ff = row["full_fidelity"]
        lines.append(f"| {row['label']}: full table (leave-one-out) | - | {ff['students']} | "
                     f"{100 * ff['within_10pct']:.0f}% | {100 * ff['rmspe']:.1f}% | {ff['spearman']:.3f} | | "
                     f"{row['full_s']:.0f} s |")
    lines += ["", "Targets (N=20: >= 90% within ±10%, Spearman >= 0.95):"]
    def full_note(ff: dict) -> str:
        """Whose fault a miss is: the machine's when the full table missed too, else the transfer's."""
        if ff["within_10pct"] >= 0.9 and (ff["spearman"] or 0) >= 0.95:
            return "so the miss is the few-shot procedure's, not the machine's noise"
        return "so the machine's noise bounds both"

    for row in report["targets"].values():
        f20 = next((f for f in row["fewshot"] if f["n"] == 20), None)
        if f20 is None:
            continue
        met = f20["within_10pct"] >= 0.9 and (f20["spearman"] or 0) >= 0.95
        ff = row["full_fidelity"]
        lines.append(f"- {row['label']}: {'met' if met else 'NOT met'} ({100 * f20['within_10pct']:.0f}%, "
                     f"{f20['spearman']:.3f}); the target's own full table reached {100 * ff['within_10pct']:.0f}% "
                     f"and {ff['spearman']:.3f} on its students in this run, "
                     f"{full_note(ff)}; "
                     f"few-shot wall time {f20['fit_s']:.0f} s vs {row['full_s']:.0f} s for the full table.")
    return "\n".join(lines)


if __name__ == "__main__":
    main()

"""onnxruntime with 2 threads: intra-op spinning on (its default) vs off, in few-shot jobs → results/fewshot_spin.md.

With 2 intra-op threads on a 2-vCPU VM the few-shot transfer met the N = 20 targets in one job of two (session 13)
and two jobs measured the same students alike with Spearman 0.81 only (Intel VM). onnxruntime's worker threads
spin-wait between operators by default (``session.intra_op.allow_spinning``); where the second vCPU is shared, a
spinning worker is a known source of latency variance. This bench alternates few-shot jobs (``profile_fewshot``,
N = 20, 30 held-out students: the same students in every job) with spinning on and off, after measuring the
source table, and reports per job the held-out figures and per setting how alike its jobs measure the same
students. The rule that decides what changes was written first: ``results/fewshot_spin_rule.txt``.

No profile exposes the setting (that is what the rule decides), so the "off" jobs rebuild the runner's session
with ``allow_spinning = 0`` and otherwise the runner's own options: the only difference between the two settings.

    python benchmarks/bench_fewshot_spin.py --work /tmp/spin [--pairs 3]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import write_fragment  # noqa: E402

SETTINGS = ("on", "off")


def met(job: dict) -> bool:
    """Whether a job's held-out students meet the N = 20 targets: the profiles' default fidelity target."""
    from dass_edge.latency.gate import FidelityTarget

    target = FidelityTarget()
    return job["within_10pct"] >= target.within_10pct and job["spearman"] >= target.spearman


def _spin_switch():
    """Patch the onnxruntime runner so that ``state["on"] = False`` builds sessions without intra-op spinning."""
    from dass_edge.latency.runners import onnxrt

    state = {"on": True}
    activate = onnxrt.OrtRunner.activate_impl

    def patched(self) -> None:
        activate(self)
        if state["on"] or not self.threads or self.threads < 2:
            return
        ort = onnxrt._ort()
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._sess = ort.InferenceSession(self.model, so, providers=list(self.providers))

    onnxrt.OrtRunner.activate_impl = patched
    return state


def two_thread_setup(work: Path):
    """``(teacher spec, source table, 2-thread target profile)``: the source (the ``cpu`` profile's full table,
    30 fidelity students) measured into ``work`` first, or the one an interrupted run left there."""
    from benchmarks.bench_fewshot import target_profile
    from dass_edge.latency import LatencyTable, default_teacher_spec, load_profile, profile_device

    work.mkdir(parents=True, exist_ok=True)
    teacher = default_teacher_spec()
    src_path = work / "source.json"
    src = LatencyTable.load(src_path) if src_path.is_file() else \
        profile_device(load_profile("cpu"), teacher, 32, out=src_path, students=30).table
    return teacher, src, target_profile("threads2")


def header(work: Path, log: str) -> tuple[str, float | None]:
    """The fragment's line saying when the jobs ran (from the source table's provenance and the log's time; the
    fragment's own Date is when it was written), and the source table's profiling seconds."""
    from dass_edge.latency import LatencyTable

    src = LatencyTable.load(work / "source.json")
    end = time.strftime("%H:%M", time.gmtime((work / log).stat().st_mtime))
    load = src.provenance["device"].get("load_average") or ["?"]
    return (f"- Measured: {src.provenance['date'][:10]}, the source table finished "
            f"{src.provenance['date'][11:16]}, the last job {end} UTC; nothing else running (load average when the "
            f"source table finished: {load[0]:.1f})\n\n"), src.provenance.get("elapsed_s")


def run(work: Path, pairs: int) -> list[dict]:
    from dass_edge.latency.fewshot import profile_fewshot

    state = _spin_switch()
    teacher, src, target = two_thread_setup(work)
    log = work / "spin.json"
    jobs = json.loads(log.read_text()) if log.is_file() else []
    for j, setting in itertools.product(range(pairs), SETTINGS):
        if any(r["pair"] == j and r["spin"] == setting for r in jobs):
            continue
        state["on"] = setting == "on"
        t0 = time.perf_counter()
        res = profile_fewshot(target, teacher, 20, 32, source=src, out=work / f"t2-{setting}-{j}.json", heldout=30)
        f = res.table.fidelity
        jobs.append({"pair": j, "spin": setting, "within_10pct": f["within_10pct"], "spearman": f["spearman"],
                     "rmspe": f["rmspe"], "seconds": round(time.perf_counter() - t0, 1),
                     "heldout_p50_ms": [s["p50_ms"] for s in f["samples"]],
                     "fit_p50_ms": [s["p50_ms"] for s in res.table.data["transferred"]["fit_samples"]]})
        log.write_text(json.dumps(jobs))
        print(f"pair {j} spin {setting}: {100 * f['within_10pct']:.0f}% within 10%, Spearman {f['spearman']:.3f} "
              f"({jobs[-1]['seconds']} s)", flush=True)
    return jobs


def agreement(jobs: list[dict], setting: str, key: str = "spin") -> tuple[list[float], list[float]]:
    """Between every two jobs of one setting (``job[key] == setting``): Spearman of the held-out students' medians
    and the median |ratio - 1| of a student's median in one job to the other's."""
    from scipy.stats import spearmanr

    mine = [np.asarray(r["heldout_p50_ms"]) for r in jobs if r[key] == setting]
    rhos, gaps = [], []
    for a, b in itertools.combinations(mine, 2):
        rhos.append(float(spearmanr(a, b).statistic))
        gaps.append(float(np.median(np.abs(a / b - 1))))
    return rhos, gaps


def decision(jobs: list[dict]) -> str:
    """The rule (``results/fewshot_spin_rule.txt``): a ``spin`` profile key only if spinning off meets both N = 20
    targets in every job of it while spinning on misses them in at least one."""
    off = [met(r) for r in jobs if r["spin"] == "off"]
    on = [met(r) for r in jobs if r["spin"] == "on"]
    if off and all(off) and not all(on):
        return ("Decision (the rule): spinning off met both targets in every job and on did not: profiles get a `spin` "
                "key.")
    return (f"Decision (the rule): nothing changes: spinning off met both targets in {sum(off)} of {len(off)} jobs, "
            f"on in {sum(on)} of {len(on)}.")


def report(jobs: list[dict], source_s: float | None) -> str:
    lines = ["| pair | spinning | held-out within ±10% | Spearman | RMSPE | job wall time |",
             "|---|---|---:|---:|---:|---:|"]
    for r in sorted(jobs, key=lambda r: (r["pair"], SETTINGS.index(r["spin"]))):
        lines.append(f"| {r['pair'] + 1} | {r['spin']} | {100 * r['within_10pct']:.0f}% | {r['spearman']:.3f} "
                     f"| {100 * r['rmspe']:.1f}% | {r['seconds']:.0f} s |")
    lines += ["", "| spinning | jobs meeting both N = 20 targets "
              "| held-out latency vs on (median of per-student ratios) "
              "| job-to-job Spearman of the same 30 students | job-to-job median gap |", "|---|---|---|---|---|"]
    on = np.mean([r["heldout_p50_ms"] for r in jobs if r["spin"] == "on"], axis=0)  # per student, over the jobs
    for s in SETTINGS:
        mine = [r for r in jobs if r["spin"] == s]
        n_met = sum(map(met, mine))
        level = np.median(np.mean([r["heldout_p50_ms"] for r in mine], axis=0) / on)
        rhos, gaps = agreement(jobs, s)
        lines.append(f"| {s} | {n_met} of {len(mine)} | {level:.2f} | "
                     + ", ".join(f"{x:.3f}" for x in rhos) + " | " + ", ".join(f"{100 * g:.1f}%" for g in gaps) + " |")
    lines += ["", decision(jobs)]
    if source_s is not None:
        lines += ["", f"Source table (`cpu`, onnxruntime FP32, 1 thread) measured first in the same work folder: "
                  f"{source_s:.0f} s."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--pairs", type=int, default=3)
    args = ap.parse_args()
    jobs = run(args.work, args.pairs)
    head, source_s = header(args.work, "spin.json")
    body = head + report(jobs, source_s)
    print(body)
    write_fragment("fewshot_spin", "Few-shot with 2 threads: onnxruntime intra-op spinning on vs off",
                   f"python benchmarks/bench_fewshot_spin.py --work {args.work} --pairs {args.pairs}", body)


if __name__ == "__main__":
    main()

"""2-thread few-shot jobs summarized raw vs with round normalization → results/fewshot_normalize.md.

In the bad 2-thread job of ``bench_fewshot_spin.py`` a subset of students measured 22-29% faster than in the
other jobs and the rest within 1%: the VM has a fast state, and a student's summary (the lower quartile of its
sessions near its fastest) takes it whenever any of its interleaved rounds caught it. Round normalization
(:func:`round_factors`, here only: the rule did not adopt it) divides each session by its round's factor, the
median over every student of that round's speed relative to the student's own median, before the same summary.
Both summaries come from the same job's records (the second ``profile_fewshot`` call gets the first one's rounds,
normalized), so the comparison is paired. The rule that decides: ``results/fewshot_spin_rule.txt``, session 14's
second rule.

    python benchmarks/bench_fewshot_normalize.py --work /tmp/norm [--jobs 4]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.bench_fewshot_spin import agreement, header, met, two_thread_setup  # noqa: E402
from benchmarks.common import write_fragment  # noqa: E402

SUMMARIES = ("raw", "normalized")


def round_factors(rounds_by_model) -> np.ndarray:
    """Per round of an interleaved job, how fast the machine ran then: the median over the models of (that
    round's session median / the model's median over its rounds). Every model is measured once per round and the
    rounds follow each other in time, so a state of the machine lasting a round moves every model of that round
    alike, while a disturbance of one session moves one model."""
    med = np.array([[float(np.median(r)) for r in model] for model in rounds_by_model], dtype=float)
    if med.ndim != 2 or med.shape[0] == 0 or med.shape[1] == 0:
        raise ValueError("need the same number of non-empty rounds for every model")
    return np.median(med / np.median(med, axis=1, keepdims=True), axis=0)


def normalized(rounds: list) -> list:
    """Each session divided by its round's factor."""
    f = round_factors(rounds)
    return [[[us / f[r] for us in calls] for r, calls in enumerate(student)] for student in rounds]


def run(work: Path, n_jobs: int) -> list[dict]:
    import dass_edge.latency.fewshot as fs

    teacher, src, target = two_thread_setup(work)
    measured, cache = fs.measure_rounds, {}

    def once(*args, **kwargs):  # the job's rounds, measured by the raw summary's call, normalized for the second
        if "rounds" not in cache:
            cache["rounds"] = measured(*args, **kwargs)
            return cache["rounds"]
        rounds, info = cache["rounds"]
        return normalized(rounds), info

    fs.measure_rounds = once
    log = work / "normalize.json"
    jobs = json.loads(log.read_text()) if log.is_file() else []
    for j in range(n_jobs):
        if any(r["job"] == j for r in jobs):
            continue
        cache.clear()
        t0 = time.perf_counter()
        for summary in SUMMARIES:
            res = fs.profile_fewshot(target, teacher, 20, 32, source=src, out=work / f"t2-{summary}-{j}.json",
                                     heldout=30)  # SUMMARIES' order: raw measures, normalized reuses
            f = res.table.fidelity
            jobs.append({"job": j, "summary": summary, "within_10pct": f["within_10pct"], "spearman": f["spearman"],
                         "rmspe": f["rmspe"], "seconds": round(time.perf_counter() - t0, 1),
                         "heldout_p50_ms": [s["p50_ms"] for s in f["samples"]]})
            print(f"job {j} {summary}: {100 * f['within_10pct']:.0f}% within 10%, Spearman {f['spearman']:.3f}",
                  flush=True)
        log.write_text(json.dumps(jobs))
    return jobs


def decision(jobs: list[dict]) -> str:
    """The rule: adopted if, normalized, >= 3 of the 4 jobs meet both targets and the mean job-to-job Spearman is
    not lower than raw."""
    n_met = {s: sum(met(r) for r in jobs if r["summary"] == s) for s in SUMMARIES}
    rho = {s: float(np.mean(agreement(jobs, s, "summary")[0])) for s in SUMMARIES}
    n = sum(r["summary"] == "normalized" for r in jobs)
    ok = n >= 4 and n_met["normalized"] >= 3 and rho["normalized"] >= rho["raw"]
    return (f"Decision (the rule): {'adopted' if ok else 'nothing changes'}: normalized, {n_met['normalized']} of {n} "
            f"jobs met both targets (raw {n_met['raw']}); mean job-to-job Spearman {rho['normalized']:.3f} vs raw "
            f"{rho['raw']:.3f}.")


def report(jobs: list[dict]) -> str:
    lines = ["| job | summary | held-out within ±10% | Spearman | RMSPE |", "|---|---|---:|---:|---:|"]
    for r in sorted(jobs, key=lambda r: (r["job"], SUMMARIES.index(r["summary"]))):
        lines.append(f"| {r['job'] + 1} | {r['summary']} | {100 * r['within_10pct']:.0f}% | {r['spearman']:.3f} "
                     f"| {100 * r['rmspe']:.1f}% |")
    lines += ["", "| summary | jobs meeting both N = 20 targets | job-to-job Spearman of the same 30 students "
              "| job-to-job median gap |", "|---|---|---|---|"]
    for s in SUMMARIES:
        rhos, gaps = agreement(jobs, s, "summary")
        lines.append(f"| {s} | {sum(met(r) for r in jobs if r['summary'] == s)} of "
                     f"{sum(r['summary'] == s for r in jobs)} | " + ", ".join(f"{x:.3f}" for x in rhos) + " | "
                     + ", ".join(f"{100 * g:.1f}%" for g in gaps) + " |")
    return "\n".join(lines + ["", decision(jobs)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--jobs", type=int, default=4)
    args = ap.parse_args()
    jobs = run(args.work, args.jobs)
    body = header(args.work, "normalize.json")[0] + report(jobs)
    print(body)
    write_fragment("fewshot_normalize", "Few-shot with 2 threads: sessions summarized raw vs round-normalized",
                   f"python benchmarks/bench_fewshot_normalize.py --work {args.work} --jobs {args.jobs}", body)


if __name__ == "__main__":
    main()

"""What a fully measured 2-thread table reaches on this machine → results/threads2_full.md.

The few-shot target for onnxruntime with 2 threads (issue 15: N = 20, >= 90% of held-out students within ±10%,
Spearman >= 0.95) can only be met where the target itself measures tables that well. This bench profiles the ``cpu``
profile with 2 intra-op threads K times in a row (``profile_device``: every block, the leave-one-out fidelity on 30
random students, the profile's re-measurement gate) and reports each table's own fidelity, beside the few-shot
figures of the same machine (BENCHMARKS.md, per-stage block scale and the transfer's ceiling).

    OMP_NUM_THREADS=1 python benchmarks/bench_threads2_full.py --work WORK [--profiles 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import write_fragment  # noqa: E402


def run(work: Path, profiles: int) -> list[dict]:
    """Each profile's fidelity (resumable: a table already in ``work`` is read, not measured again)."""
    from benchmarks.bench_fewshot import target_profile
    from benchmarks.bench_fewshot_spin import met
    from dass_edge.latency import LatencyTable, default_teacher_spec, profile_device

    work.mkdir(parents=True, exist_ok=True)
    teacher, target = default_teacher_spec(), target_profile("threads2")
    rows = []
    for k in range(profiles):
        path = work / f"threads2-full-{k}.json"
        if path.is_file():
            table, seconds = LatencyTable.load(path), None
        else:
            t0 = time.perf_counter()
            table = profile_device(target, teacher, 32, out=path, students=30).table
            seconds = time.perf_counter() - t0
        f = table.fidelity
        rows.append({"profile": k + 1, "within_10pct": f["within_10pct"], "spearman": f["spearman"],
                     "rmspe": f["rmspe"], "seconds": seconds,
                     "met": met(f)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def report(rows: list[dict]) -> str:
    lines = ["| profile | students within ±10% (leave-one-out) | Spearman | RMSPE | meets the few-shot targets | "
             "wall time |", "|---|---:|---:|---:|---|---:|"]
    for r in rows:
        wall = f"{r['seconds']:.0f} s" if r["seconds"] is not None else "(read back)"
        lines.append(f"| {r['profile']} | {100 * r['within_10pct']:.0f}% | {r['spearman']:.3f} | "
                     f"{100 * r['rmspe']:.1f}% | {'yes' if r['met'] else 'no'} | {wall} |")
    n_met = sum(r["met"] for r in rows)
    lines += ["", f"{n_met} of {len(rows)} fully measured 2-thread tables meet the targets the few-shot transfer is "
              "held to (>= 90% within ±10%, Spearman >= 0.95) on their own students."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--profiles", type=int, default=3)
    args = ap.parse_args()
    body = report(run(args.work, args.profiles))
    print(body)
    write_fragment("threads2_full", "Full 2-thread tables on this machine: what a measured table reaches",
                   f"OMP_NUM_THREADS=1 python benchmarks/bench_threads2_full.py --work WORK --profiles {args.profiles}",
                   body)


if __name__ == "__main__":
    main()

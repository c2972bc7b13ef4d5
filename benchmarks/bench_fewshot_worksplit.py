"""A work-split term for the few-shot transfer, current vs candidate on the same jobs → results/fewshot_worksplit.md.

In steady 2-thread jobs the transfer misses Spearman 0.95 by its own per-student error. With 2 threads a block's
gain depends on how much work its kernels split, which grows with its MACs; the transfer has a scale drifting with
log2 of the resolution but none with the work. The candidate adds one column, ``src*log2mmacs:block`` (source ms x
log2 of the block's MMACs). Each few-shot table a job wrote stores its fit students and its held-out students with
their measured medians, so both fits are scored on the same records: ``rescore`` refits a stored table's students
with the current columns and with the candidate's. The rule (``results/fewshot_spin_rule.txt``, the third of
session 14) chooses on stored jobs (``results/fewshot_jobs/``: sessions 13 and 14's N = 20 jobs on the AMD VM, each
job's students and measured medians and the source table it was transferred from), and only a candidate that passes
goes on to a check on fresh jobs; this one did not pass, so no fresh job was measured for it.

    python benchmarks/bench_fewshot_worksplit.py SOURCE:TABLE ...    # e.g. results/fewshot_jobs/s13a_source.json:...
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import write_fragment  # noqa: E402

CANDIDATE = "src*log2mmacs:block"


@contextlib.contextmanager
def candidate_columns():
    """The transfer with the candidate column added (the module's columns and per-entry values, restored after)."""
    import dass_edge.latency.fewshot as fs
    from dass_edge.space import block_macs

    columns, entry_columns = fs.COLUMNS, fs.entry_columns

    def with_work(e, source_ms: float) -> dict:
        cols = entry_columns(e, source_ms)
        if e.kind == "block":
            mmacs = block_macs(e.in_ch, e.out_ch, e.stride, e.resolution, e.has_projection) * e.batch / 1e6
            cols[CANDIDATE] = float(source_ms) * math.log2(max(mmacs, 1e-3))
        return cols

    fs.COLUMNS, fs.entry_columns = columns[:-1] + (CANDIDATE, columns[-1]), with_work
    try:
        yield
    finally:
        fs.COLUMNS, fs.entry_columns = columns, entry_columns


def score(source, table: dict) -> dict:
    """Refit a stored few-shot table's fit students and score its held-out students (the table's own code path)."""
    from dass_edge.latency import LatencyTable
    from dass_edge.latency.fewshot import fit_transfer, transfer_table
    from dass_edge.latency.stats import fidelity_metrics
    from dass_edge.space import Arch, SearchSpace

    space = SearchSpace(source.teacher, fixed_last_stage=table["space"]["fixed_last_stage"])
    fit_s = table["transferred"]["fit_samples"]
    held = table["fidelity"]["samples"]
    fit = fit_transfer(source, [space.to_spec(Arch.from_dict(s["arch"])) for s in fit_s], [s["p50_ms"] for s in fit_s])
    mapped = transfer_table(source, fit)
    t = LatencyTable({**source.data, "entries": mapped["entries"], "overhead": mapped["overhead"],
                      "correction": {"features": ["lut_ms", "const"], "p50": [1.0, mapped["const_ms"]],
                                     "p90_ratio": 1.0}})
    pred = [t.predict(space.to_spec(Arch.from_dict(s["arch"])))["p50_ms"] for s in held]
    return fidelity_metrics(pred, [s["p50_ms"] for s in held])


def rescore(pairs: list[tuple[Path, Path]]) -> list[dict]:
    """Per stored table: its target, and the held-out figures with the current columns and with the candidate."""
    from dass_edge.latency import LatencyTable

    rows = []
    for src_path, table_path in pairs:
        source, table = LatencyTable.load(src_path), json.loads(table_path.read_text())
        current = score(source, table)
        with candidate_columns():
            cand = score(source, table)
        target = "threads2" if table["threads"] == 2 else "int8" if table["precision"] == "int8" else \
            "torch" if table["backend"] == "torch" else table["device"]
        rows.append({"job": str(table_path), "target": target, "stored": table["fidelity"]["spearman"],
                     "current": current, "candidate": cand})
    return rows


def report(rows: list[dict]) -> tuple[str, dict]:
    lines = ["| job | target | current: within ±10% / Spearman | candidate: within ±10% / Spearman |",
             "|---|---|---|---|"]
    for r in rows:
        c, k = r["current"], r["candidate"]
        lines.append(f"| {Path(r['job']).parent.name}/{Path(r['job']).name} | {r['target']} | "
                     f"{100 * c['within_10pct']:.0f}% / {c['spearman']:.3f} | {100 * k['within_10pct']:.0f}% / "
                     f"{k['spearman']:.3f} |")
    means = {}
    for t in sorted({r["target"] for r in rows}):
        mine = [r for r in rows if r["target"] == t]
        means[t] = {v: (float(np.mean([r[v]["within_10pct"] for r in mine])),
                        float(np.mean([r[v]["spearman"] for r in mine]))) for v in ("current", "candidate")}
        lines.append(f"| mean of {len(mine)} | {t} | {100 * means[t]['current'][0]:.0f}% / "
                     f"{means[t]['current'][1]:.3f} | {100 * means[t]['candidate'][0]:.0f}% / "
                     f"{means[t]['candidate'][1]:.3f} |")
    return "\n".join(lines), means


def passes(means: dict, rise: float) -> bool:
    """The rule: the 2-thread mean Spearman rises by at least ``rise``; no target's mean within-10% falls by more
    than 3 points, nor its mean Spearman by more than 0.005."""
    t2 = means.get("threads2")
    if t2 is None or t2["candidate"][1] - t2["current"][1] < rise:
        return False
    return all(m["candidate"][0] >= m["current"][0] - 0.03 and m["candidate"][1] >= m["current"][1] - 0.005
               for m in means.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("pairs", nargs="+", help="SOURCE:TABLE, a few-shot table and the source it was transferred from")
    args = ap.parse_args()
    text, means = report(rescore([tuple(Path(p) for p in x.split(":", 1)) for x in args.pairs]))
    verdict = "go on to a check on fresh jobs" if passes(means, 0.01) else "stop here: nothing changes"
    body = text + ("\n\nThe choice on stored jobs (the rule: the 2-thread mean Spearman must rise by 0.01): "
                   f"{verdict}.")
    print(body)
    write_fragment("fewshot_worksplit", "Few-shot transfer: a work-split term, current vs candidate on the same jobs",
                   "python benchmarks/bench_fewshot_worksplit.py " + " ".join(args.pairs), body)

if __name__ == "__main__":
    main()

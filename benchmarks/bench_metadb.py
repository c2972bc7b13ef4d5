"""Meta-database v2: recipe, cost per row, teachers and label quality per pair, FLOPs inside bands.

    python benchmarks/bench_metadb.py [--db metadb/metadb_v2.jsonl]

Reads the rows the build wrote (it trains nothing), so it can be rerun at any point of the build
(`metadb/build_v2.sh`) and reports whatever rows exist. Per held-out pair it gives the label quality
targets (a within-band seed-to-seed Spearman >= 0.8 and a mean seed gap <= 1/4 of the within-band
spread), the cost per row, and FLOPs' Spearman with accuracy inside bands: over the bands the build
sampled, and over equal-count bands of 8 students sorted by FLOPs; `meta eval` reports both as the
`flops` baseline's figures, the ones the predictor must beat. ImageNet-stem pairs get their own line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import write_fragment  # noqa: E402

DEFAULT_DB = ROOT / "metadb" / "metadb_v2.jsonl"
#: Label-quality targets of issue 12 (held-out pairs, inside bands).
SEED_RHO_TARGET = 0.8
GAP_TARGET = 0.25


def _fmt(v: object, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def eval_flops_band_spearman(rows: list[dict]) -> float | None:
    """FLOPs' band Spearman exactly as ``meta eval`` scores the ``flops`` baseline: each student's accuracy
    is its mean over seeds, students are sorted by FLOPs and cut into equal-count bands."""
    from dass_edge.predictor.band_metrics import band_spearman

    acc: dict[str, list[float]] = defaultdict(list)
    flops: dict[str, float] = {}
    for r in rows:
        acc[r["arch_key"]].append(r["val_acc"])
        flops[r["arch_key"]] = float(r["flops"])
    keys = sorted(acc)
    value = band_spearman([flops[k] for k in keys], [statistics.mean(acc[k]) for k in keys],
                          [flops[k] for k in keys])
    return None if value != value else round(value, 4)


def cost_per_row(rows: list[dict]) -> dict[str, dict]:
    """Seconds per KD run by device: median, mean, rows, job-hours."""
    by_device: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        by_device[r.get("device", "cpu")].append(float(r["seconds"]))
    return {d: {"median_s": round(statistics.median(v), 1), "mean_s": round(statistics.mean(v), 1), "rows": len(v),
                "job_hours": round(sum(v) / 3600, 2)} for d, v in sorted(by_device.items())}


def pair_figures(rows: list[dict]) -> dict:
    """Everything the report says about one (task, teacher) pair."""
    from dass_edge.metadb.info import band_quality, per_band_quality, task_summary

    summary = task_summary(rows)
    band = band_quality(rows) or {}
    seed_rho, gap = band.get("seed_spearman"), band.get("gap_over_spread")
    return {**summary, "band": band, "per_band": per_band_quality(rows), "cost": cost_per_row(rows),
            "eval_flops_band_spearman": eval_flops_band_spearman(rows),
            "meets_targets": None if seed_rho is None or gap is None
            else bool(seed_rho >= SEED_RHO_TARGET and gap <= GAP_TARGET)}


def _cost_text(cost: dict[str, dict]) -> str:
    return "; ".join(f"{c['median_s']:.0f} / {c['mean_s']:.0f} ({d}, {c['rows']} rows)" for d, c in cost.items())


def _heldout_section(pairs: list[dict]) -> list[str]:
    lines = ["", "### Held-out pairs", "",
             "| pair | stem @ px, teacher | bands (with seed pairs) | within-band seed ρ | gap / spread | targets met "
             "| s per row: median / mean (device) | FLOPs ρ, sampled bands | FLOPs ρ, equal-count bands |",
             "|---|---|---|---|---|---|---|---|---|"]
    for p in pairs:
        band = p["band"]
        met = {None: "not yet", True: "yes", False: "no"}[p["meets_targets"]]
        lines.append(
            f"| {p['task']} | {p['stem']} @ {p['resolution']}, {p['teacher_model']} "
            f"{'-'.join(map(str, p['teacher_depths'] or []))} | {band.get('bands', 0)} "
            f"({band.get('bands_with_seed_pairs', 0)}) | {_fmt(band.get('seed_spearman'))} "
            f"| {_fmt(band.get('gap_over_spread'))} | {met} | {_cost_text(p['cost'])} "
            f"| {_fmt(band.get('flops_spearman'))} | {_fmt(p['eval_flops_band_spearman'])} |")
    lines += ["", f"Targets: within-band seed ρ >= {SEED_RHO_TARGET} and mean seed gap <= {GAP_TARGET} of the "
              "within-band spread (means over bands with >= 3 students trained with both seeds). The two FLOPs "
              "figures are the `flops` baseline's in `meta eval`, the ones DaSS must beat: 'sampled bands' is its "
              "`sampled_band_spearman` (mean over the build's bands with >= 5 students), 'equal-count bands' its "
              "`band_spearman` (students sorted by FLOPs, bands of 8, bands under 5 dropped). They differ when a "
              "sampled band holds fewer than 8 students (a build in progress): equal-count bands then mix two FLOPs "
              "levels, which flatters FLOPs."]
    for p in pairs:
        lines += ["", f"{p['task']}, per band:", "",
                  "| band | MFLOPs | students / rows | seed pairs | seed ρ | gap / spread | spread (pts) | FLOPs ρ |",
                  "|---|---|---|---|---|---|---|---|"]
        for b in p["per_band"]:
            lines.append(f"| {b['band']} | {b['flops_min'] / 1e6:.2f}..{b['flops_max'] / 1e6:.2f} "
                         f"| {b['students']} / {b['rows']} | {b['seed_pairs']} | {_fmt(b['seed_spearman'])} "
                         f"| {_fmt(b['gap_over_spread'])} | {_fmt(b['spread'], 2)} | {_fmt(b['flops_spearman'])} |")
    return lines


def _group_line(name: str, pairs: list[dict]) -> str:
    def mean(values: list) -> str:
        v = [x for x in values if x is not None]
        return _fmt(round(statistics.mean(v), 4)) if v else "-"

    if not pairs:
        return f"- {name}: no held-out pair has rows yet."
    return (f"- {name} ({', '.join(p['task'] for p in pairs)}): within-band seed ρ "
            f"{mean([p['band'].get('seed_spearman') for p in pairs])}, gap / spread "
            f"{mean([p['band'].get('gap_over_spread') for p in pairs])}, FLOPs ρ in sampled bands "
            f"{mean([p['band'].get('flops_spearman') for p in pairs])}, in equal-count bands "
            f"{mean([p['eval_flops_band_spearman'] for p in pairs])} (means over pairs).")


def report(db: Path) -> str:
    """The markdown body for ``db`` (whatever rows it holds; a note when it holds none)."""
    from dass_edge.metadb import db_info, read_rows

    rows = read_rows(db) if db.is_file() else []
    if not rows:
        return f"No rows in `{db}` yet: the build (`metadb/build_v2.sh`) has not finished a KD run.\n"
    info = db_info(rows)
    by_task: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_task[r["task"]].append(r)
    pairs = [pair_figures(by_task[t]) for t in sorted(by_task)]
    devices = ", ".join(f"{n} on {d}" for d, n in info["rows_by_device"].items())
    shown = db.relative_to(ROOT) if db.is_relative_to(ROOT) else db
    lines = [
        f"Database `{shown}`: {info['rows']} rows ({info['band_rows']} band-sampled), {info['tasks']} pairs, held "
        f"out: {', '.join(info['heldout_tasks']) or 'none'}; stems {info['stems']}; {info['train_hours']} "
        f"job-hours of KD ({devices}).",
        "",
        "| pair | teacher | stem @ px | teacher val | students / rows | acc range | s per row: median / mean (device) "
        "| band seed ρ | band gap/spread | band FLOPs ρ |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in pairs:
        band = p["band"]
        lines.append(
            f"| {p['task']}{' (held out)' if p['heldout'] else ''} | {p['teacher_model']} "
            f"{'-'.join(map(str, p['teacher_depths'] or []))} | {p['stem']} @ {p['resolution']} "
            f"| {_fmt(p['teacher_val_acc'], 1)} | {p['students']} / {p['rows']} "
            f"| {p['min_acc']:.1f}..{p['max_acc']:.1f} | {_cost_text(p['cost'])} | {_fmt(band.get('seed_spearman'))} "
            f"({band.get('bands_with_seed_pairs', 0)} bands) | {_fmt(band.get('gap_over_spread'))} "
            f"| {_fmt(band.get('flops_spearman'))} ({band.get('bands_for_flops', 0)} bands) |")
    lines += ["", "Band ρ figures are means over bands with >= 3 seed pairs (seed ρ) or >= 5 students (FLOPs ρ); "
              "'-' means no band has that many rows yet. Seconds per row are each KD job's wall time: the median is "
              "the cost; the mean also counts jobs that were paused (SIGSTOP) while timing benchmarks ran beside "
              "the build, or slowed by other work on the two cores."]
    held = [p for p in pairs if p["heldout"]]
    if held:
        lines += _heldout_section(held)
        lines += ["", "By teacher stem (held-out pairs):", ""]
        lines += [_group_line(f"{stem}-stem", [p for p in held if p["stem"] == stem])
                  for stem in ("small", "imagenet")]
    recipes = sorted({json.dumps({**r["recipe"], "recipe": {k: v for k, v in r["recipe"]["recipe"].items()
                                                              if k != "seed"}}, sort_keys=True) for r in rows})
    lines += ["", f"KD recipe(s), seeds aside: `{'`, `'.join(recipes)}`"]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", type=Path, default=DEFAULT_DB)
    args = ap.parse_args()
    db = args.db.resolve()
    body = report(db)
    print(body)
    shown = db.relative_to(ROOT) if db.is_relative_to(ROOT) else db
    write_fragment("metadb", "Meta-database v2 (band-sampled students)",
                   f"python benchmarks/bench_metadb.py --db {shown}", body)


if __name__ == "__main__":
    main()

"""Meta-database v2: recipe, cost per row, teachers and label quality per pair, FLOPs inside bands.

    python benchmarks/bench_metadb.py [--db metadb/metadb_v2.jsonl]

Reads the rows the build wrote (it trains nothing): the build itself is `metadb/build_v2.sh`. The figure
the predictor must beat is FLOPs' Spearman with accuracy *inside* bands on the held-out pairs; the label
quality targets are a within-band seed-to-seed Spearman >= 0.8 and a mean seed gap <= 1/4 of the
within-band spread.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.common import write_fragment  # noqa: E402

DEFAULT_DB = HERE.parent / "metadb" / "metadb_v2.jsonl"


def _fmt(v: object, digits: int = 3) -> str:
    if v is None:
        return "-"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def report(db: Path) -> str:
    from dass_edge.metadb import db_info, read_rows

    rows = read_rows(db) if db.is_file() else []
    if not rows:
        return f"No rows in `{db}` yet: the build (`metadb/build_v2.sh`) has not finished a KD run.\n"
    info = db_info(rows)
    secs: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        secs[f"{r['task']}|{r.get('device', 'cpu')}"].append(r["seconds"])
    devices = ", ".join(f"{n} on {d}" for d, n in info["rows_by_device"].items())
    lines = [
        f"Database `{db.relative_to(HERE.parent) if db.is_relative_to(HERE.parent) else db}`: {info['rows']} rows "
        f"({info['band_rows']} band-sampled), {info['tasks']} pairs, held out: "
        f"{', '.join(info['heldout_tasks']) or 'none'}; stems {info['stems']}; "
        f"{info['train_hours']} job-hours of KD ({devices}).",
        "",
        "| pair | teacher | stem @ px | teacher val | students / rows | acc range | median s/row (device) "
        "| band seed ρ | band gap/spread | band FLOPs ρ |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for t in info["per_task"]:
        band = t["within_band"] or {}
        cost = "; ".join(f"{statistics.median(v):.0f} ({k.split('|')[1]})" for k, v in sorted(secs.items())
                         if k.split("|")[0] == t["task"])
        lines.append(
            f"| {t['task']}{' (held out)' if t['heldout'] else ''} | {t['teacher_model']} "
            f"{'-'.join(map(str, t['teacher_depths'] or []))} | {t['stem']} @ {t['resolution']} "
            f"| {_fmt(t['teacher_val_acc'], 1)} | {t['students']} / {t['rows']} "
            f"| {t['min_acc']:.1f}..{t['max_acc']:.1f} | {cost} | {_fmt(band.get('seed_spearman'))} "
            f"({band.get('bands_with_seed_pairs', 0)} bands) | {_fmt(band.get('gap_over_spread'))} "
            f"| {_fmt(band.get('flops_spearman'))} ({band.get('bands_for_flops', 0)} bands) |")
    recipes = sorted({json.dumps({**r["recipe"], "recipe": {k: v for k, v in r["recipe"]["recipe"].items()
                                                              if k != "seed"}}, sort_keys=True) for r in rows})
    lines += ["", "Band ρ figures are means over bands with >= 3 seed pairs (seed ρ) or >= 5 students (FLOPs ρ); "
              "'-' means no band has that many rows yet.", "", f"KD recipe(s), seeds aside: `{'`, `'.join(recipes)}`"]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", type=Path, default=DEFAULT_DB)
    args = ap.parse_args()
    body = report(args.db)
    print(body)
    write_fragment("metadb", "Meta-database v2 (band-sampled students)",
                   f"python benchmarks/bench_metadb.py --db {args.db.name}", body)


if __name__ == "__main__":
    main()

"""Summaries of a database: size, held-out tasks, accuracy spread and the seed-noise ceiling.

``seed_spearman`` is the Spearman correlation between two seeds' accuracies over the same students
(per task, averaged over tasks that have two seeds): no predictor can rank students better than the
labels agree with themselves, so it is the yardstick for every predictor figure.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict

__all__ = ["band_quality", "db_info", "per_band_quality", "task_summary", "seed_agreement"]


def _spearman(a: list[float], b: list[float]) -> float:
    from scipy.stats import spearmanr

    if len(a) < 3 or len(set(a)) < 2 or len(set(b)) < 2:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def seed_agreement(rows: list[dict]) -> dict | None:
    """Seed-to-seed agreement of one task's rows: over students trained with the two lowest seeds."""
    by_seed: dict[int, dict[str, float]] = defaultdict(dict)
    for r in rows:
        by_seed[r["seed"]][r["arch_key"]] = r["val_acc"]
    if len(by_seed) < 2:
        return None
    s0, s1 = sorted(by_seed)[:2]
    common = sorted(set(by_seed[s0]) & set(by_seed[s1]))
    if len(common) < 3:
        return None
    a = [by_seed[s0][k] for k in common]
    b = [by_seed[s1][k] for k in common]
    gaps = [abs(x - y) for x, y in zip(a, b)]
    means = [(x + y) / 2 for x, y in zip(a, b)]
    spread = max(means) - min(means)
    return {"seeds": [s0, s1], "students": len(common), "spearman": round(_spearman(a, b), 4),
            "mean_gap": round(statistics.mean(gaps), 3), "max_gap": round(max(gaps), 3),
            "spread": round(spread, 3), "gap_over_spread": round(statistics.mean(gaps) / spread, 4) if spread else None}


def _band(row: dict) -> int | None:
    s = row.get("sampling") or {}
    return s.get("band") if s.get("kind") == "bands" else None


def per_band_quality(rows: list[dict], min_students: int = 3) -> list[dict]:
    """One entry per sampled band of a task's rows (band order): its FLOPs range, students, rows, and
    the seed-to-seed Spearman and mean gap over spread of its students trained with two seeds (None
    with fewer than ``min_students`` such students), and FLOPs' Spearman with the seed-mean accuracy
    (None with fewer than 5 students). Empty for a task without band-sampled rows."""
    by_band: dict[int, list[dict]] = defaultdict(list)
    for r in rows:
        b = _band(r)
        if b is not None:
            by_band[b].append(r)
    out = []
    for band in sorted(by_band):
        band_rows = by_band[band]
        agree = seed_agreement(band_rows)
        ok = bool(agree and agree["students"] >= min_students and not math.isnan(agree["spearman"]))
        acc: dict[str, list[float]] = defaultdict(list)
        flops: dict[str, int] = {}
        for r in band_rows:
            acc[r["arch_key"]].append(r["val_acc"])
            flops[r["arch_key"]] = r["flops"]
        rho = None
        if len(acc) >= 5:
            keys = sorted(acc)
            value = _spearman([flops[k] for k in keys], [statistics.mean(acc[k]) for k in keys])
            rho = None if math.isnan(value) else round(value, 4)
        out.append({"band": band, "flops_min": min(flops.values()), "flops_max": max(flops.values()),
                    "students": len(acc), "rows": len(band_rows), "seed_pairs": agree["students"] if agree else 0,
                    "seed_spearman": agree["spearman"] if ok else None,
                    "gap_over_spread": agree["gap_over_spread"] if ok else None,
                    "spread": agree["spread"] if ok else None, "flops_spearman": rho})
    return out


def band_quality(rows: list[dict], min_students: int = 3) -> dict | None:
    """Label quality *inside* FLOPs bands, where the search's question lives: per band with at least
    ``min_students`` seed pairs, the seed-to-seed Spearman and the mean seed gap over the band's spread;
    and FLOPs' own Spearman with accuracy inside each band (>= 5 students; the figure a predictor must
    beat). Means over bands; None for a task without band-sampled rows."""
    bands = per_band_quality(rows, min_students)
    if not bands:
        return None
    seed_rhos = [b["seed_spearman"] for b in bands if b["seed_spearman"] is not None]
    gap_ratios = [b["gap_over_spread"] for b in bands if b["gap_over_spread"] is not None]
    flops_rhos = [b["flops_spearman"] for b in bands if b["flops_spearman"] is not None]

    def mean(v: list[float]) -> float | None:
        return round(statistics.mean(v), 4) if v else None

    return {"bands": len(bands), "bands_with_seed_pairs": len(seed_rhos),
            "seed_spearman": mean(seed_rhos), "gap_over_spread": mean(gap_ratios),
            "flops_spearman": mean(flops_rhos), "bands_for_flops": len(flops_rhos)}


def task_summary(rows: list[dict]) -> dict:
    accs = [r["val_acc"] for r in rows]
    params = [r["params"] for r in rows]
    first = rows[0]
    tspec = first.get("teacher_spec") or {}
    return {"task": first["task"], "heldout": bool(rows[-1].get("heldout")), "rows": len(rows),
            "teacher_depths": tspec.get("depths"), "stem": tspec.get("stem", "small"),
            "resolution": first.get("resolution"), "task_sha256": first.get("task_sha256"),
            "sampling": (first.get("sampling") or {}).get("kind", "even"), "within_band": band_quality(rows),
            "students": len({r["arch_key"] for r in rows}), "seeds": sorted({r["seed"] for r in rows}),
            "teacher_model": first.get("teacher_model"), "teacher_val_acc": first.get("teacher_val_acc"),
            "min_acc": min(accs), "max_acc": max(accs), "acc_spread": round(max(accs) - min(accs), 3),
            "params_spearman": round(_spearman(params, accs), 4) if len(rows) >= 3 else None,
            "seed_agreement": seed_agreement(rows)}


def db_info(rows: list[dict]) -> dict:
    """The figures ``dass-edge meta info`` reports (JSON-ready)."""
    by_task: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_task[r["task"]].append(r)
    tasks = [task_summary(by_task[t]) for t in sorted(by_task)]
    agreements = [t["seed_agreement"] for t in tasks if t["seed_agreement"]]
    return {
        "rows": len(rows),
        "band_rows": sum(1 for r in rows if _band(r) is not None),
        "tasks": len(tasks),
        "stems": dict(sorted(Counter(t["stem"] for t in tasks).items())),
        "students_per_task": min((t["students"] for t in tasks), default=0),
        "heldout_tasks": [t["task"] for t in tasks if t["heldout"]],
        "teacher_models": sorted({t["teacher_model"] for t in tasks if t["teacher_model"]}),
        "recipes": sorted({r["recipe_hash"] for r in rows}),
        "seed_spearman": round(statistics.mean(a["spearman"] for a in agreements), 4) if agreements else None,
        "seed_gap_over_spread": round(statistics.mean(a["gap_over_spread"] for a in agreements
                                                      if a["gap_over_spread"] is not None), 4)
        if agreements else None,
        "acc_spread": round(statistics.median(t["acc_spread"] for t in tasks), 3) if tasks else None,
        "train_hours": round(sum(r.get("seconds", 0.0) for r in rows) / 3600, 2),  # summed over jobs
        "rows_by_device": dict(sorted(Counter(r.get("device", "cpu") for r in rows).items())),
        "per_task": tasks,
    }

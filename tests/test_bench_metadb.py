"""benchmarks/bench_metadb.py: per held-out pair label quality, cost per row and FLOPs inside bands, on
hand-made rows whose figures are known."""

from __future__ import annotations

import json

import pytest
from scipy.stats import spearmanr

from benchmarks.bench_metadb import pair_figures, report


def _row(task: str, band: int, i: int, seed: int, acc: float, flops: int, stem: str = "small", res: int = 16,
         heldout: bool = True, seconds: float = 10.0, device: str = "cpu") -> dict:
    return {"task": task, "teacher_sha256": "t", "arch_key": f"a{band}-{i}", "seed": seed, "recipe_hash": "r",
            "val_acc": acc, "flops": flops, "params": flops // 10, "heldout": heldout, "resolution": res,
            "teacher_model": "resnet18_in64" if stem == "imagenet" else "resnet_edge_d3",
            "teacher_spec": {"stem": stem, "depths": [2, 2, 2, 2]}, "teacher_val_acc": 80.0,
            "sampling": {"kind": "bands", "band": band, "bands": 2}, "seconds": seconds, "device": device,
            "recipe": {"alpha": 0.5, "recipe": {"epochs": 10, "seed": seed}}}


def _pair(task: str = "emoji-faces", **kw) -> list[dict]:
    """Two sampled bands of 5 students. Inside a band accuracy falls as FLOPs rise (FLOPs rho -1 there);
    across bands it rises, so one equal-count band of all 10 flatters FLOPs. Seed 1 = seed 0 + 0.5 points."""
    rows = []
    for band, (f0, a0) in enumerate(((1_000_000, 55.0), (11_000_000, 65.0))):
        for i in range(5):
            for seed in (0, 1):
                rows.append(_row(task, band, i, seed, a0 - i + 0.5 * seed, f0 + i * 100_000,
                                 seconds=10.0 + 10.0 * seed, **kw))
    return rows


def test_pair_figures_are_the_known_values():
    rows = _pair()
    p = pair_figures(rows)
    assert p["band"]["seed_spearman"] == 1.0 and p["band"]["bands_with_seed_pairs"] == 2
    assert p["band"]["gap_over_spread"] == pytest.approx(0.5 / 4.0)  # gap 0.5, spread of the seed means 4
    assert p["band"]["flops_spearman"] == -1.0 and p["meets_targets"] is True
    means = {r["arch_key"]: r["val_acc"] - 0.25 for r in rows if r["seed"] == 1}
    flops = {r["arch_key"]: r["flops"] for r in rows}
    keys = sorted(means)
    want = spearmanr([flops[k] for k in keys], [means[k] for k in keys]).statistic
    assert p["eval_flops_band_spearman"] == pytest.approx(want, abs=1e-4) and want > 0.5
    assert p["cost"] == {"cpu": {"median_s": 15.0, "mean_s": 15.0, "rows": 20, "job_hours": round(300 / 3600, 2)}}
    assert [(b["band"], b["students"], b["rows"], b["seed_pairs"]) for b in p["per_band"]] == [(0, 5, 10, 5),
                                                                                            (1, 5, 10, 5)]


def test_targets_missed_when_seeds_disagree():
    rows = [{**r, "val_acc": r["val_acc"] + (6.0 * (int(r["arch_key"][-1]) % 2) if r["seed"] else 0.0)}
            for r in _pair()]
    p = pair_figures(rows)
    assert p["meets_targets"] is False and p["band"]["gap_over_spread"] > 0.25


def test_report_has_heldout_pairs_bands_and_an_imagenet_line(tmp_path):
    db = tmp_path / "v2.jsonl"
    assert "No rows" in report(db)
    rows = _pair() + _pair("emoji-animals", stem="imagenet", res=64) + [
        {**r, "heldout": False} for r in _pair("emoji-food", stem="imagenet", res=64)]
    db.write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = report(db)
    assert "### Held-out pairs" in text and "emoji-faces, per band:" in text and "emoji-food, per band" not in text
    assert "- imagenet-stem (emoji-animals): within-band seed ρ 1.000, gap / spread 0.125" in text
    assert "- small-stem (emoji-faces):" in text
    assert "| emoji-animals | imagenet @ 64, resnet18_in64 2-2-2-2 | 2 (2) | 1.000 | 0.125 | yes |" in text

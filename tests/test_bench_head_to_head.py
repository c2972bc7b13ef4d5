"""benchmarks/bench_head_to_head.py: the report's figure of each method's margin over random students."""

from __future__ import annotations

import pytest

from benchmarks.bench_head_to_head import SHIPPED, plot_margins


def test_margins_figure_has_one_row_per_setting_and_is_written_whole(tmp_path):
    from matplotlib.image import imread

    settings = [("task-a 0.200 ms", {SHIPPED: 5.0, "dass": 4.5, "flops": 3.0, "diswot": -40.0}),
                ("task-b 0.300 ms", {SHIPPED: 1.0, "flops": 2.0, "synflow": -3.0})]
    path = plot_margins(tmp_path / "h2h.png", settings)
    assert path == tmp_path / "h2h.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width = imread(path).shape[:2]
    assert (width, height) == (990, round((1.2 + 0.5 * 2) * 110))  # 9 in wide, 1.2 + 0.5 in per setting, 110 dpi
    assert [p.name for p in tmp_path.iterdir()] == ["h2h.png"]  # no temporary file left beside it


def test_margins_figure_refuses_nothing_to_plot_and_settings_without_the_shipped_search(tmp_path):
    with pytest.raises(ValueError, match="no complete setting"):
        plot_margins(tmp_path / "h2h.png", [])
    with pytest.raises(ValueError, match="task-b"):
        plot_margins(tmp_path / "h2h.png", [("task-a", {SHIPPED: 1.0}), ("task-b", {"flops": 2.0})])
    assert not any(tmp_path.iterdir())


def test_one_on_one_averages_a_tasks_budgets_and_skips_methods_missing_somewhere():
    from benchmarks.bench_head_to_head import _one_on_one

    by_task = {"a": [{SHIPPED: 80.0, "flops": 78.0, "ridge": None}, {SHIPPED: 82.0, "flops": 82.0, "ridge": 81.0}],
               "b": [{SHIPPED: 60.0, "flops": 61.0, "ridge": 59.0}]}
    text = _one_on_one(by_task, ["flops", "ridge"])
    # flops: differences +2, 0, -1 -> mean +0.33; per task a: +1, b: -1 -> the interval spans [-1, +1]
    assert "flops +0.33 [-1.00, +1.00] (ahead in 1 of 3, level in 1)" in text
    assert "ridge" not in text  # task a has a budget without ridge's pick: one task left is no interval
    assert _one_on_one(by_task, ["ridge"]) == ""


def test_one_on_one_counts_only_the_tasks_where_the_method_picked_at_every_budget():
    from benchmarks.bench_head_to_head import _one_on_one

    by_task = {"a": [{SHIPPED: 80.0, "flops": 70.0}, {SHIPPED: 80.0, "flops": None}],
               "b": [{SHIPPED: 60.0, "flops": 58.0}], "c": [{SHIPPED: 50.0, "flops": 50.0}]}
    # task a is left out of the mean as well as the interval: b +2, c 0
    assert "flops +1.00 [+0.00, +2.00] (ahead in 1 of 2, level in 1)" in _one_on_one(by_task, ["flops"])


@pytest.mark.parametrize("shard", ["2/2", "1/1", "x", "-1/2", "1/0"])
def test_a_shard_that_would_train_nothing_is_refused_before_any_stage(shard, monkeypatch, capsys):
    """``--shard K/N`` counts K from 0: ``2/2`` matches no student, so it once exited 0 having trained nothing."""
    import benchmarks.bench_head_to_head as h2h

    monkeypatch.setattr("sys.argv", ["bench_head_to_head.py", "train", f"--shard={shard}"])
    monkeypatch.setattr(h2h, "train", lambda args: pytest.fail("a stage ran"))
    with pytest.raises(SystemExit) as exit_:
        h2h.main()
    assert exit_.value.code == 2
    assert f"--shard takes K/N with 0 <= K < N (shares count from 0), got {shard!r}" in capsys.readouterr().err


def test_shard_shares_are_0_to_n_minus_1_and_stable_across_runs():
    from benchmarks.bench_head_to_head import _shard

    arch = {"depths": [1, 1, 1, 1], "widths": [[16], [32], [64], [128]]}
    jobs = [{"task": t, "arch": arch, "seed": s} for t in ("a", "b", "c", "d", "e", "f") for s in (0, 1)]
    shares = [_shard(j, 3) for j in jobs]
    assert set(shares) <= {0, 1, 2} and len(set(shares)) > 1  # shares 0..N-1, and more than one used
    assert shares == [_shard(j, 3) for j in jobs]  # stable: a rerun trains the same share

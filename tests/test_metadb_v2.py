"""Meta-database v2: band sampling, frozen task data, per-task resolution and the real-image families."""

from __future__ import annotations

import math
import os
import random

import numpy as np
import pytest
from conftest import run_cli

from dass_edge.commands.meta import parse_tasks
from dass_edge.data import frozen
from dass_edge.errors import DassEdgeError
from dass_edge.metadb.sampling import band_centers, sample_band_students, shape_descriptor
from dass_edge.models.resnet import model_spec
from dass_edge.space import SearchSpace


@pytest.fixture(scope="module")
def deep_space() -> SearchSpace:
    return SearchSpace(model_spec("resnet34_edge", num_classes=10, resolution=16))


def test_band_students_are_within_tolerance_of_their_band(deep_space):
    picks = sample_band_students(deep_space, bands=4, per_band=5, seed=3, tol=0.05, pool_size=1500)
    centers = band_centers(deep_space, 4)
    assert sorted({b for b, _ in picks}) == [0, 1, 2, 3]
    assert all(sum(1 for b, _ in picks if b == k) == 5 for k in range(4))
    for b, arch in picks:
        assert abs(deep_space.flops(arch) / centers[b] - 1) <= 0.05
    assert len({a for _, a in picks}) == len(picks)  # no student twice
    # Deterministic in the seed; another seed gives other students.
    assert picks == sample_band_students(deep_space, bands=4, per_band=5, seed=3, tol=0.05, pool_size=1500)
    assert picks != sample_band_students(deep_space, bands=4, per_band=5, seed=4, tol=0.05, pool_size=1500)


def test_band_centers_lie_strictly_between_smallest_and_teacher(deep_space):
    centers = band_centers(deep_space, 8)
    lo, hi = deep_space.flops(deep_space.smallest_arch()), deep_space.flops(deep_space.teacher_arch())
    assert lo < centers[0] < centers[-1] < hi
    ratios = [math.log(b / a) for a, b in zip(centers, centers[1:])]
    assert max(ratios) - min(ratios) < 1e-9  # evenly spaced in log-FLOPs


def test_band_picks_are_more_diverse_in_shape_than_random_band_members(deep_space):
    """Farthest-first picks spread over shapes: their mean pairwise shape distance beats random members'."""
    picks = sample_band_students(deep_space, bands=1, per_band=6, seed=0, tol=0.05, pool_size=3000)
    center = band_centers(deep_space, 1)[0]
    members = [a for a in deep_space.sample_many(3000, seed=0) if abs(deep_space.flops(a) / center - 1) <= 0.05]
    assert len(members) >= 20

    def spread(archs):
        d = [shape_descriptor(deep_space, a) for a in archs]
        return np.mean([math.dist(x, y) for i, x in enumerate(d) for y in d[i + 1:]])

    rng = random.Random(1)
    random_spreads = [spread(rng.sample(members, 6)) for _ in range(30)]
    assert spread([a for _, a in picks]) > np.percentile(random_spreads, 90)


def test_shape_descriptor_separates_deep_narrow_from_shallow_wide(deep_space):
    t = deep_space.teacher_arch()
    d = shape_descriptor(deep_space, t)
    assert d[:4] == [1.0, 1.0, 1.0, 1.0] and d[4:8] == [1.0, 1.0, 1.0, 1.0]
    assert abs(sum(d[8:]) - 1) < 1e-9
    s = shape_descriptor(deep_space, deep_space.smallest_arch())
    assert s[:4] == [1 / 3, 1 / 4, 1 / 6, 1 / 3] and all(abs(w - 0.5) < 1e-9 for w in s[4:7])


def test_parse_tasks_reads_model_and_resolution():
    assert parse_tasks("a,b:resnet34_edge,c:resnet18_in64@64", "resnet_edge_s") == [
        ("a", "resnet_edge_s", None), ("b", "resnet34_edge", None), ("c", "resnet18_in64", 64)]
    with pytest.raises(DassEdgeError, match="not a resolution"):
        parse_tasks("c:resnet18_in64@big", "resnet_edge_s")


# --- frozen task data ----------------------------------------------------------------------------
@pytest.fixture
def frozen_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("DASS_EDGE_FROZEN_TASKS", str(tmp_path))
    frozen._verified.clear()
    return tmp_path


def test_frozen_task_round_trips_and_is_preferred(frozen_dir):
    from dass_edge.data import load_task
    from dass_edge.data.builtin import render_arrays

    fname, sha = frozen.freeze_task("count-dots", frozen_dir)
    assert (frozen_dir / fname).is_file() and frozen.read_manifest(frozen_dir) == {fname: sha}
    data = load_task("count-dots", resolution=16)
    ref = render_arrays("count-dots", 16)
    assert np.array_equal(data.train.images.numpy(), ref["train_x"])
    assert np.array_equal(data.val.labels.numpy(), ref["val_y"])
    # A multiple of the stored resolution is pixel repetition: exact, the same on every machine.
    big = load_task("count-dots", resolution=64)
    assert big.train.images.shape[-1] == 64
    assert np.array_equal(big.test.images.numpy()[:, :, ::4, ::4], ref["test_x"])
    assert np.array_equal(big.test.images.numpy()[:, :, 3::4, 3::4], ref["test_x"])
    with pytest.raises(DassEdgeError, match="multiple"):
        load_task("count-dots", resolution=24)
    frozen.check_frozen("count-dots", sha)
    with pytest.raises(DassEdgeError, match="not the one"):
        frozen.check_frozen("count-dots", "0" * 64)
    with pytest.raises(DassEdgeError, match="already frozen"):
        frozen.freeze_task("count-dots", frozen_dir)


def test_corrupt_frozen_file_is_a_one_line_error(frozen_dir, capsys):
    from dass_edge.data import load_task

    fname, _ = frozen.freeze_task("count-dots", frozen_dir)
    path = frozen_dir / fname
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(DassEdgeError, match="does not match its sha256"):
        load_task("count-dots", resolution=16)
    code, out, err = run_cli(["teacher", "train", "--task", "count-dots", "--resolution", "16", "--epochs", "1",
                              "--out", str(frozen_dir / "t.safetensors")], capsys)
    assert code == 2 and err.count("\n") == 1 and err.startswith("error:") and "sha256" in err
    assert not (frozen_dir / "t.safetensors").exists()


# --- real-image families (Debian packages; .ci/run installs them) ----------------------------------
def _have(path: str) -> bool:
    return os.path.exists(path)


@pytest.mark.skipif(not _have("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"),
                    reason="needs the Debian package fonts-noto-color-emoji (.ci/run installs it)")
def test_emoji_render_is_deterministic_and_classes_differ():
    from dass_edge.data.packaged import emoji_classes, render_emoji

    classes = emoji_classes("animals")[:3]
    a, ya = render_emoji("animals", classes, 4, 16, np.random.default_rng(0))
    b, _ = render_emoji("animals", classes, 4, 16, np.random.default_rng(0))
    assert a.shape == (12, 3, 16, 16) and a.dtype == np.uint8 and np.array_equal(a, b)
    assert sorted(np.bincount(ya)) == [4, 4, 4]
    assert a.std() > 20  # real colour content, not blank canvases


@pytest.mark.skipif(not _have("/usr/share/backgrounds/mate/nature/Aqua.jpg"),
                    reason="needs the Debian package mate-backgrounds (.ci/run installs it)")
def test_photo_crops_come_from_their_region():
    from dass_edge.data.builtin import builtin_tasks
    from dass_edge.data.packaged import render_photo_crops

    x, y = render_photo_crops(2, 16, np.random.default_rng(0))
    assert len(builtin_tasks()["photo-crops"].class_names) == 56 == len(np.unique(y))
    # Crops of a green meadow are greener than crops of a dune (classes carry the photo's colours).
    names = builtin_tasks()["photo-crops"].class_names
    green = [i for i, n in enumerate(names) if n.startswith("GreenMeadow/")]
    dune = [i for i, n in enumerate(names) if n.startswith("Dune/")]
    g = x[np.isin(y, green)].astype(float)
    d = x[np.isin(y, dune)].astype(float)
    assert (g[:, 1] - g[:, 0]).mean() > (d[:, 1] - d[:, 0]).mean()


def _photo_family_installed(family: str) -> bool:
    from dass_edge.data.packaged import PHOTO_FAMILIES

    fam = PHOTO_FAMILIES[family]
    return all(_have(os.path.join(fam.directory, p)) for _, p in fam.photos)


# Per family, a photograph whose crops are bluer than another's (blue minus red, mean over crops).
_BLUER = {"plasma": ("Kite", "FallenLeaf"), "lomiri": ("Bridge_by_Sander_Klootwijk", "Picture_0B_by_freespace")}


@pytest.mark.parametrize("family", sorted(_BLUER))
def test_photo_families_are_forty_regions_of_their_own_photographs(family):
    from dass_edge.data.builtin import builtin_tasks
    from dass_edge.data.packaged import PHOTO_FAMILIES

    fam = PHOTO_FAMILIES[family]
    if not _photo_family_installed(family):
        pytest.skip(f"needs the Debian package {fam.package} (.ci/run installs it)")
    task = builtin_tasks()[f"photo-{family}"]
    assert task.num_classes == 40 == len(set(task.class_names)) and task.description.endswith(f"({fam.package})")
    x, y = task.render(2, 16, np.random.default_rng(0))
    again, _ = task.render(2, 16, np.random.default_rng(0))
    assert x.shape == (80, 3, 16, 16) and x.dtype == np.uint8 and np.array_equal(x, again)
    assert sorted(np.bincount(y)) == [2] * 40
    blue, other = _BLUER[family]
    names = task.class_names

    def blueness(photo: str) -> float:
        rows = x[np.isin(y, [i for i, n in enumerate(names) if n.startswith(photo + "/")])].astype(float)
        return float((rows[:, 2] - rows[:, 0]).mean())

    assert blueness(blue) > blueness(other) + 20
    # No photograph is shared with another family (each family is a dataset of its own).
    others = {p for f, v in PHOTO_FAMILIES.items() if f != family for _, p in v.photos}
    assert not {p for _, p in fam.photos} & others


@pytest.mark.parametrize("family", ["crops", "plasma", "lomiri"])
def test_missing_package_is_a_clear_error(monkeypatch, family):
    import dataclasses

    from dass_edge.data import packaged

    fam = packaged.PHOTO_FAMILIES[family]
    monkeypatch.setitem(packaged.PHOTO_FAMILIES, family, dataclasses.replace(fam, directory="/nonexistent/backgrounds"))
    with pytest.raises(DassEdgeError, match=f"apt-get install {fam.package}"):
        packaged.photo_files(family)


# --- label quality inside bands ---------------------------------------------------------------------
def _row(band, arch, seed, acc, flops):
    return {"task": "t", "arch_key": arch, "seed": seed, "val_acc": acc, "flops": flops, "params": flops,
            "sampling": {"kind": "bands", "band": band}}


def test_band_quality_on_hand_made_rows():
    from dass_edge.metadb.info import band_quality

    rows = []
    # Band 0: seeds agree perfectly; FLOPs rank accuracy exactly.  Band 1: seeds reversed; FLOPs reversed.
    for i in range(5):
        rows += [_row(0, f"a{i}", 0, 50 + i, 100 + i), _row(0, f"a{i}", 1, 50.5 + i, 100 + i)]
        rows += [_row(1, f"b{i}", 0, 60 + i, 200 - i), _row(1, f"b{i}", 1, 64 - i, 200 - i)]
    q = band_quality(rows)
    assert q["bands"] == 2 and q["bands_with_seed_pairs"] == 2
    assert q["seed_spearman"] == 0.0  # mean of +1 and -1
    # FLOPs vs mean accuracy: +1 in band 0; band 1 means are all 62 (ties) -> undefined, left out.
    assert q["flops_spearman"] == 1.0 and q["bands_for_flops"] == 1
    # Band 0: gap 0.5 over a spread of 4 -> 0.125; band 1: mean gap (4+2+0+2+4)/5 = 2.4 over spread 0 -> None.
    assert q["gap_over_spread"] == 0.125
    assert band_quality([{**r, "sampling": {"kind": "even"}} for r in rows]) is None


def test_band_quality_needs_three_seed_pairs_per_band():
    from dass_edge.metadb.info import band_quality

    rows = [_row(0, f"a{i}", s, 50 + i + s, 100 + i) for i in range(2) for s in (0, 1)]
    q = band_quality(rows)
    assert q["bands"] == 1 and q["bands_with_seed_pairs"] == 0 and q["seed_spearman"] is None

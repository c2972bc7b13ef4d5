"""``meta eval`` / ``meta train`` on several databases read from frozen task data (issues 12 and 19).

The fixture is two small databases in the shapes of v1 and v2: ``v1.jsonl`` rows carry no task checksum
(resolved by task name), ``v2.jsonl`` rows record ``task_file``/``task_sha256``, and one v2 pair has an
ImageNet-stem teacher at 64 px (frozen 16 px images repeated x4). Every task is read from a frozen folder
of tiny random images made here, so nothing is rendered. Labels rise with log-params plus noise.
"""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest
from scipy.stats import spearmanr

from dass_edge.data.builtin import builtin_tasks
from dass_edge.errors import DassEdgeError
from dass_edge.io import file_sha256
from dass_edge.metadb.sampling import sample_students
from dass_edge.models.checkpoint import save_checkpoint
from dass_edge.space import SearchSpace
from tests.conftest import perturbed_teacher, run_cli

pytestmark = pytest.mark.usefixtures("one_thread")

# name: (database, held out, teacher model, resolution)
PAIRS = {
    "count-dots": ("v1", False, "resnet_edge_s", 16),
    "glyph-math": ("v1", False, "resnet_edge_s", 16),
    "shapes": ("v1", True, "resnet_edge_s", 16),
    "textures": ("v2", True, "resnet18_in64", 64),
}
FAST = ["--baselines", "flops,params,ridge", "--bootstrap", "50"]


def _write_frozen(folder, name: str, classes: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", 8), ("val", 2), ("test", 2)):
        arrays[f"{split}_x"] = rng.integers(0, 256, size=(n * classes, 3, 16, 16), dtype=np.uint8)
        arrays[f"{split}_y"] = np.repeat(np.arange(classes, dtype=np.int64), n)
    with open(folder / f"{name}-r16.npz", "wb") as fh:
        np.savez_compressed(fh, **arrays)
    return file_sha256(folder / f"{name}-r16.npz")


def _write_manifest(folder, shas: dict[str, str]) -> None:
    (folder / "SHA256SUMS").write_text("".join(f"{v}  {k}-r16.npz\n" for k, v in sorted(shas.items())))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("v1v2")
    frozen, teachers = root / "tasks", root / "teachers"
    frozen.mkdir()
    teachers.mkdir()
    classes = {name: builtin_tasks()[name].num_classes for name in PAIRS}
    shas = {name: _write_frozen(frozen, name, classes[name], i) for i, name in enumerate(PAIRS)}
    _write_manifest(frozen, shas)
    rng = np.random.default_rng(0)
    dbs: dict[str, list[dict]] = {"v1": [], "v2": []}
    for name, (db, heldout, model, res) in PAIRS.items():
        teacher = perturbed_teacher(num_classes=classes[name], resolution=res, model_name=model)
        path = save_checkpoint(teachers / f"{name}.safetensors", teacher, {"val_acc": 80.0, "task": name})
        space = SearchSpace(teacher.spec)
        tspec = {"stem": teacher.spec.stem, "depths": list(teacher.spec.depths), "widths": list(teacher.spec.widths)}
        lo, hi = math.log(space.params(space.smallest_arch())), math.log(space.params(space.teacher_arch()))
        archs = sample_students(space, 12, seed=7)
        upper = set(sorted(archs, key=space.flops)[6:])  # v2 rows: two sampled bands of 6 by FLOPs
        for arch in archs:
            acc = 40.0 + 35.0 * (math.log(space.params(arch)) - lo) / (hi - lo) + rng.normal(0, 1.0)
            for seed in ((0, 1) if heldout else (0,)):
                row = {"task": name, "teacher_file": path.name, "teacher_sha256": file_sha256(path),
                       "resolution": res, "heldout": heldout, "teacher_val_acc": 80.0, "arch": arch.to_dict(),
                       "arch_key": arch.key(), "seed": seed, "recipe_hash": "r", "params": space.params(arch),
                       "flops": space.flops(arch), "teacher_spec": tspec,
                       "val_acc": round(acc + rng.normal(0, 0.3) * seed, 4)}
                if db == "v2":
                    row.update(task_file=f"{name}-r16.npz", task_sha256=shas[name],
                               sampling={"kind": "bands", "band": int(arch in upper), "bands": 2})
                dbs[db].append(row)
    for db, rows in dbs.items():
        (root / f"{db}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {"root": root, "frozen": frozen, "teachers": teachers, "shas": shas, "v1": root / "v1.jsonl",
            "v2": root / "v2.jsonl"}


@pytest.fixture
def frozen_env(world, monkeypatch):
    monkeypatch.setenv("DASS_EDGE_FROZEN_TASKS", str(world["frozen"]))
    return world


@pytest.fixture(scope="module")
def predictor(world):
    """A predictor meta-trained on the fixture's meta-training tasks (a few steps: its figures are not the
    point here; ``meta train`` itself is exercised by the slow test below)."""
    import os

    from dass_edge.metadb.sources import combine_dbs
    from dass_edge.predictor.meta_tasks import load_meta_tasks
    from dass_edge.predictor.store import save_predictor
    from dass_edge.predictor.training import TrainConfig, meta_train

    old = os.environ.get("DASS_EDGE_FROZEN_TASKS")
    os.environ["DASS_EDGE_FROZEN_TASKS"] = str(world["frozen"])
    try:
        rows = combine_dbs([world["v1"], world["v2"]]).rows
        train = [t for t in load_meta_tasks(rows, world["teachers"]) if not t.heldout]
    finally:
        if old is None:
            os.environ.pop("DASS_EDGE_FROZEN_TASKS")
        else:
            os.environ["DASS_EDGE_FROZEN_TASKS"] = old
    cfg = TrainConfig(steps=3)
    model, _ = meta_train(train, cfg)
    return save_predictor(world["root"] / "pred.safetensors", [model],
                          {"train": cfg.to_dict(), "db": {"train_tasks": [t.name for t in train]}})


def _eval(world, predictor, capsys, *extra: str) -> tuple[int, str, str]:
    return run_cli(["meta", "eval", "--db", str(world["v1"]), "--db", str(world["v2"]), "--teachers",
                    str(world["teachers"]), "--predictor", str(predictor), "--plots", str(world["root"] / "plots"),
                    *FAST, *extra], capsys)


@pytest.mark.slow
def test_meta_train_records_sources_coverage_and_task_data(frozen_env, capsys):
    from dass_edge.predictor.coverage import predictor_coverage
    from dass_edge.predictor.store import read_predictor_meta

    out = frozen_env["root"] / "trained.safetensors"
    code, _, err = run_cli(["meta", "train", "--db", str(frozen_env["v1"]), "--db", str(frozen_env["v2"]),
                            "--teachers", str(frozen_env["teachers"]), "--out", str(out), "--json"], capsys)
    assert code == 0, err
    meta = read_predictor_meta(out)
    db = meta["db"]
    assert db["file"] == "v1.jsonl + v2.jsonl" and [s["file"] for s in db["sources"]] == ["v1.jsonl", "v2.jsonl"]
    want = hashlib.sha256((file_sha256(frozen_env["v1"]) + "\n" + file_sha256(frozen_env["v2"])).encode())
    assert db["sha256"] == want.hexdigest()
    assert db["train_tasks"] == ["count-dots", "glyph-math"] and db["heldout_tasks"] == ["shapes", "textures"]
    cov = meta["coverage"]  # the meta-training rows only: the ImageNet-stem pair is held out
    assert cov["stems"] == ["small"] and cov["resolutions"] == [16] and cov["max_depth"] == 2
    assert cov["rows"] == 24 and [t["depths"] for t in cov["teachers"]] == [[2, 2, 2, 2]]
    assert predictor_coverage(out) == cov
    assert meta["task_data"]["textures"] == {"source": "frozen", "file": "textures-r16.npz",
                                             "sha256": frozen_env["shas"]["textures"], "resolution": 64}
    assert meta["task_data"]["shapes"]["source"] == "frozen-by-name"
    assert set(meta["heldout"]["groups"]) == {"small_stem", "imagenet_stem"}


def test_eval_on_v1_plus_v2_is_repeatable_with_pairs_and_groups(frozen_env, predictor, capsys):
    code, out, err = _eval(frozen_env, predictor, capsys, "--json")
    assert code == 0, err
    first = json.loads(out)
    code, out, err = _eval(frozen_env, predictor, capsys, "--json")
    assert code == 0, err
    assert json.loads(out) == first  # two runs, one result

    assert first["heldout_tasks"] == ["shapes", "textures"]
    assert first["pairs"]["textures"] == {"stem": "imagenet", "resolution": 64, "teacher_depths": [2, 2, 2, 2],
                                          "teacher_widths": [16, 32, 64, 128], "students": 12, "seeds": 2}
    assert first["pairs"]["shapes"]["stem"] == "small" and first["pairs"]["shapes"]["resolution"] == 16
    assert first["task_data"]["textures"]["source"] == "frozen"
    assert first["task_data"]["shapes"] == {"source": "frozen-by-name", "file": "shapes-r16.npz",
                                            "sha256": frozen_env["shas"]["shapes"], "resolution": 16}
    assert [d["file"] for d in first["databases"]] == ["v1.jsonl", "v2.jsonl"]
    groups = first["groups"]
    assert set(groups) == {"small_stem", "imagenet_stem", "db:v1.jsonl", "db:v2.jsonl"}
    assert groups["imagenet_stem"]["tasks"] == ["textures"] and groups["db:v1.jsonl"]["tasks"] == ["shapes"]
    for g in groups.values():  # DaSS against every baseline, in every group
        assert {"dass", "flops", "params", "ridge", "ceiling"} <= set(g["mean"])
        assert set(g["bootstrap"]) == {"flops", "params", "ridge"}
        b = g["bootstrap"]["flops"]["band_spearman"]
        assert b["lo"] <= b["diff"] <= b["hi"]
    # a one-task group's means are that task's figures
    assert groups["imagenet_stem"]["mean"]["flops"] == first["tasks"]["textures"]["flops"]
    # band-sampled pairs are also scored inside the bands the build sampled
    assert "sampled_band_spearman" not in first["tasks"]["shapes"]["flops"]
    v2 = [json.loads(line) for line in frozen_env["v2"].read_text().splitlines()]
    acc: dict[str, list[float]] = {}
    for r in v2:
        acc.setdefault(r["arch_key"], []).append(r["val_acc"])
    want = []
    for band in (0, 1):
        keys = sorted({r["arch_key"] for r in v2 if r["sampling"]["band"] == band})
        flops = {r["arch_key"]: r["flops"] for r in v2}
        want.append(spearmanr([flops[k] for k in keys], [np.mean(acc[k]) for k in keys]).statistic)
    assert first["tasks"]["textures"]["flops"]["sampled_band_spearman"] == pytest.approx(np.mean(want), abs=1e-4)
    assert set(first["tasks"]["textures"]) - {"seed_vs_seed", "ceiling"} <= {
        m for m, v in first["tasks"]["textures"].items() if "sampled_band_spearman" in v}
    # labels follow log-params (plus noise): params ranks the full range well on both pairs
    assert all(first["tasks"][t]["params"]["spearman"] > 0.8 for t in ("shapes", "textures"))

    code, out, err = _eval(frozen_env, predictor, capsys)
    assert code == 0, err
    assert "imagenet_stem (textures): band rho DaSS" in out and "Held-out pairs" in out
    # the tables keep names whole on a narrow console (tests: 80 columns); the rest is in --json
    assert "frozen-by-name" in out and all(f"\n{m} " in out for m in ("dass", "flops", "params", "ridge"))


def _restore(path, data: bytes) -> None:
    path.write_bytes(data)


def test_eval_refuses_corrupt_or_mismatched_frozen_data(frozen_env, predictor, capsys, tmp_path):
    npz = frozen_env["frozen"] / "textures-r16.npz"
    good = npz.read_bytes()
    plots = frozen_env["root"] / "plots-refused"
    try:
        npz.write_bytes(good[:100] + bytes([good[100] ^ 0xFF]) + good[101:])
        code, out, err = run_cli(["meta", "eval", "--db", str(frozen_env["v1"]), "--db", str(frozen_env["v2"]),
                                  "--teachers", str(frozen_env["teachers"]), "--predictor", str(predictor),
                                  "--plots", str(plots), *FAST], capsys)
        assert code == 2 and "textures-r16.npz does not match its sha256" in err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and not plots.exists()
    finally:
        _restore(npz, good)
    # the rows record another file than the manifest lists
    rows = [json.loads(line) for line in frozen_env["v2"].read_text().splitlines()]
    other = tmp_path / "v2.jsonl"
    other.write_text("".join(json.dumps({**r, "task_sha256": "0" * 64}) + "\n" for r in rows))
    code, _, err = run_cli(["meta", "eval", "--db", str(frozen_env["v1"]), "--db", str(other), "--teachers",
                            str(frozen_env["teachers"]), "--predictor", str(predictor), *FAST], capsys)
    assert code == 2 and "is not the one its rows were built from" in err and len(err.strip().splitlines()) == 1


def test_unreadable_npz_with_a_matching_checksum_is_one_line(frozen_env, monkeypatch, tmp_path):
    from dass_edge.metadb.task_data import resolve_task_data

    folder = tmp_path / "tasks"
    folder.mkdir()
    (folder / "shapes-r16.npz").write_bytes(b"PK\x03\x04 not really a zip")
    _write_manifest(folder, {"shapes": file_sha256(folder / "shapes-r16.npz")})
    monkeypatch.setenv("DASS_EDGE_FROZEN_TASKS", str(folder))
    with pytest.raises(DassEdgeError, match="shapes-r16.npz cannot be read"):
        resolve_task_data([{"task": "shapes", "resolution": 16}])


def test_resolve_task_data_rules(frozen_env):
    from dass_edge.metadb.task_data import resolve_task_data

    sha = frozen_env["shas"]["textures"]
    v2 = {"task": "textures", "resolution": 64, "task_file": "textures-r16.npz", "task_sha256": sha}
    got = resolve_task_data([v2, {"task": "glyph-hebrew", "resolution": 16}, {"task": "shapes", "resolution": 32}])
    assert got["textures"]["source"] == "frozen" and got["shapes"]["source"] == "frozen-by-name"
    assert got["glyph-hebrew"] == {"source": "rendered", "file": None, "sha256": None, "resolution": 16}
    with pytest.raises(DassEdgeError, match="disagree on resolution"):
        resolve_task_data([v2, {**v2, "resolution": 16}])
    with pytest.raises(DassEdgeError, match="must come from one dataset"):
        resolve_task_data([v2, {"task": "textures", "resolution": 64}])
    with pytest.raises(DassEdgeError, match="its frozen file is 'textures-r16.npz'"):
        resolve_task_data([{**v2, "task_file": "textures-r32.npz"}])
    with pytest.raises(DassEdgeError, match="not a multiple"):
        resolve_task_data([{**v2, "resolution": 40}])


def test_combine_dbs_refuses_ambiguity(world, tmp_path):
    from dass_edge.metadb.sources import SHIPPED, combine_dbs, resolve_db_paths
    from dass_edge.resources import asset_path

    assert resolve_db_paths(None) == [asset_path("metadb.jsonl")]
    assert resolve_db_paths([SHIPPED, world["v2"]]) == [asset_path("metadb.jsonl"), world["v2"]]
    with pytest.raises(DassEdgeError, match="given twice"):
        resolve_db_paths([world["v1"], world["root"] / ".." / world["root"].name / "v1.jsonl"])
    copy = tmp_path / "copy.jsonl"
    copy.write_text(world["v1"].read_text().splitlines()[0] + "\n")
    with pytest.raises(DassEdgeError, match="task count-dots is in both"):
        combine_dbs([world["v1"], copy])
    with pytest.raises(DassEdgeError, match="no database at"):
        combine_dbs([tmp_path / "missing.jsonl"])
    one = combine_dbs([world["v2"]])
    assert one.provenance()["file"] == "v2.jsonl" and one.provenance()["sha256"] == file_sha256(world["v2"])
    assert one.task_source == {"textures": str(world["v2"])}


def test_meta_info_reads_several_databases_as_one(world, capsys):
    code, out, err = run_cli(["meta", "info", str(world["v1"]), str(world["v2"]), "--json"], capsys)
    assert code == 0, err
    info = json.loads(out)
    assert info["rows"] == 2 * 12 + 2 * 12 * 2 and info["tasks"] == 4 and info["path"].endswith("v2.jsonl")
    assert info["stems"] == {"imagenet": 1, "small": 3} and info["heldout_tasks"] == ["shapes", "textures"]


def test_databases_with_teachers_in_two_places_need_one_teachers_folder(world, tmp_path, capsys):
    import shutil

    other = tmp_path / "elsewhere"
    (other / "teachers").mkdir(parents=True)
    shutil.copy(world["v2"], other / "v2.jsonl")
    code, _, err = run_cli(["meta", "eval", "--db", str(world["v1"]), "--db", str(other / "v2.jsonl"), "--bootstrap",
                            "0"], capsys)
    assert code == 2 and "pass --teachers DIR holding all of them" in err and len(err.strip().splitlines()) == 1


def test_learned_baselines_are_fitted_on_the_predictors_tasks(frozen_env, predictor, capsys, tmp_path):
    """A predictor meta-trained on count-dots only: ridge is fitted on count-dots only (``train_tasks`` is
    the list the baselines are fitted on), though the databases hold glyph-math as a meta-training task
    too (as a v2 file beside the v1 one a predictor learned from would)."""
    from dass_edge.predictor.store import load_predictor, save_predictor

    models, meta = load_predictor(predictor)
    narrow = save_predictor(tmp_path / "narrow.safetensors", models,
                            {"train": meta["train"], "db": {"train_tasks": ["count-dots"]}})
    args = ["meta", "eval", "--db", str(frozen_env["v1"]), "--db", str(frozen_env["v2"]), "--teachers",
            str(frozen_env["teachers"]), "--plots", str(tmp_path / "plots"), "--baselines", "ridge", "--bootstrap",
            "0", "--json"]
    code, out, err = run_cli([*args, "--predictor", str(narrow)], capsys)
    assert code == 0, err
    narrow_report = json.loads(out)
    assert narrow_report["train_tasks"] == ["count-dots"]
    code, out, err = run_cli([*args, "--predictor", str(predictor)], capsys)
    assert code == 0, err
    wide = json.loads(out)
    assert wide["train_tasks"] == ["count-dots", "glyph-math"]
    assert wide["tasks"]["shapes"]["dass"] == narrow_report["tasks"]["shapes"]["dass"]  # same DaSS weights

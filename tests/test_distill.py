import json
import math

import pytest
import torch
from conftest import run_cli

from dass_edge.data import load_task
from dass_edge.errors import DassEdgeError
from dass_edge.io import file_sha256
from dass_edge.models import build_model, save_checkpoint
from dass_edge.space import Arch, SearchSpace, parse_arch
from dass_edge.training.distill import KDBox, KDConfig, distill
from dass_edge.training.distill_run import run_distill, target_from_args, target_from_run
from dass_edge.training.loop import Recipe
from dass_edge.training.losses import get_loss, kd_loss
from dass_edge.training.teacher import teacher_spec_for
from dass_edge.training.teacher_cache import build_teacher_cache, cache_key, load_or_build_cache

TASK = "count-dots"
RECIPE = Recipe(epochs=2, batch_size=64, lr=0.01, weight_decay=3e-5, label_smoothing=0.0, seed=3)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data():
    return load_task(TASK, resolution=8)


def tiny_teacher(data, seed=0):
    torch.manual_seed(seed)
    model = build_model(teacher_spec_for(data, widths=(8, 16, 16, 32), depths=(2, 1, 1, 2)))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_var.uniform_(0.5, 1.5)
                m.weight.normal_(1, 0.2)
    return model.eval()


@pytest.fixture(scope="module")
def teacher_file(data, tmp_path_factory):
    path = tmp_path_factory.mktemp("teacher") / "teacher.safetensors"
    save_checkpoint(path, tiny_teacher(data), {"task": TASK})
    return path


STUDENT = Arch((1, 1, 1, 2), ((4,), (10,), (8,), (32, 32)))


def test_kd_loss_matches_hand_computation():
    s = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    t = torch.tensor([[2.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
    y = torch.tensor([1, 2])
    alpha, temp = 0.3, 4.0
    ce = sum(-math.log(math.exp(s[i, y[i]]) / sum(math.exp(v) for v in s[i])) for i in range(2)) / 2
    kl = 0.0
    for i in range(2):
        p = [math.exp(v / temp) for v in t[i].tolist()]
        q = [math.exp(v / temp) for v in s[i].tolist()]
        p = [v / sum(p) for v in p]
        q = [v / sum(q) for v in q]
        kl += sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))
    expected = alpha * ce + (1 - alpha) * temp**2 * kl / 2
    assert float(kd_loss(alpha, temp)(s, t, y)) == pytest.approx(expected, rel=1e-5)
    assert float(get_loss("kd")(s, t, y)) == pytest.approx(float(kd_loss(0.5, 6.0)(s, t, y)))
    assert float(get_loss("ce")(s, None, y)) == pytest.approx(ce, rel=1e-5)


def test_unknown_loss_and_bad_options_rejected():
    with pytest.raises(DassEdgeError, match="no loss 'fancy'"):
        get_loss("fancy")
    with pytest.raises(DassEdgeError, match="alpha"):
        KDConfig(alpha=1.5).validate()


def test_cache_hit_equals_recomputed_teacher_logits(data, tmp_path):
    teacher = tiny_teacher(data)
    mean, std = teacher.spec.mean, teacher.spec.std
    kw = dict(seed=RECIPE.seed, batch_size=RECIPE.batch_size, epochs=RECIPE.epochs, augment=True, mean=mean, std=std)
    built, hit = load_or_build_cache(teacher, "sha", data, tmp_path, **kw)
    again, hit2 = load_or_build_cache(teacher, "sha", data, tmp_path, **kw)
    assert (hit, hit2) == (False, True)
    assert torch.equal(built.logits, again.logits)
    # Replay the loop's stream and compare every cached answer with the teacher run live on that batch.
    box = KDBox(teacher, get_loss("kd"), again)
    from dass_edge.data.task import iterate_batches

    gen = torch.Generator().manual_seed(RECIPE.seed)
    for epoch in range(RECIPE.epochs):
        for x, _y, idx in iterate_batches(data.train, RECIPE.batch_size, mean, std, generator=gen, augment=True,
                                          flip=data.flip_ok):
            with torch.no_grad():
                live = teacher(x)
            assert torch.allclose(box.teacher_logits(x, idx, epoch), live, atol=1e-5, rtol=1e-5)
    assert box.misses == 0 and box.hits == RECIPE.epochs * math.ceil(len(data.train) / RECIPE.batch_size)
    # Another seed's stream is a different cache entry, and a foreign batch is a miss, not a wrong answer.
    assert cache_key("sha", data, **{**kw, "seed": 4}) != built.key
    x, _, idx = next(iterate_batches(data.train, 8, mean, std))
    assert again.lookup(x, idx, 0) is None


def test_distill_with_cache_equals_live_teacher(data, tmp_path):
    teacher = tiny_teacher(data)
    config = KDConfig(recipe=RECIPE)
    live = distill(teacher, STUDENT, data, config)
    cached = distill(teacher, STUDENT, data, config, teacher_sha256="abc", cache_dir=tmp_path)
    assert live.cache["misses"] > 0 and cached.cache["misses"] == 0
    assert cached.val_acc == live.val_acc and cached.test_acc == live.test_acc
    for k, v in live.student.state_dict().items():
        assert torch.allclose(cached.student.state_dict()[k].float(), v.float(), atol=1e-5), k


def test_cache_build_replays_the_loop_stream(data):
    teacher = tiny_teacher(data)
    c = build_teacher_cache(teacher, data, key="k", seed=0, batch_size=50, epochs=1, augment=False,
                            mean=teacher.spec.mean, std=teacher.spec.std)
    from dass_edge.data.task import normalize

    x = normalize(data.train.images[:5], teacher.spec.mean, teacher.spec.std)
    with torch.no_grad():
        assert torch.allclose(c.logits[0, :5], teacher(x), atol=1e-5)


def test_parse_arch_json_and_key():
    assert parse_arch(STUDENT.key()) == STUDENT
    assert parse_arch(json.dumps(STUDENT.to_dict())) == STUDENT
    with pytest.raises(DassEdgeError, match="neither JSON nor an arch key"):
        parse_arch("big")


class Killed(Exception):
    pass


def test_killed_distill_resumes_to_identical_student(data, teacher_file, tmp_path):
    config = KDConfig(recipe=Recipe(epochs=3, batch_size=64, lr=0.01, label_smoothing=0.0))
    straight = run_distill(target_from_args(STUDENT.key(), tmp_path / "a", teacher_file), config, cache_dir=None)

    def kill(event, info):
        if event == "epoch" and info["epoch"] == 2:
            raise Killed

    target = target_from_args(STUDENT.key(), tmp_path / "b", teacher_file)
    with pytest.raises(Killed):
        run_distill(target, config, cache_dir=tmp_path / "cache", progress=kill)
    assert (tmp_path / "b" / "distill.partial.pt").is_file() and not (tmp_path / "b" / "distill.json").exists()
    resumed = run_distill(target_from_args(STUDENT.key(), tmp_path / "b", teacher_file), config,
                          cache_dir=tmp_path / "cache")
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["distill.json", "student.safetensors"]
    assert resumed["history"] == straight["history"]
    assert (resumed["val_acc"], resumed["test_acc"]) == (straight["val_acc"], straight["test_acc"])


def test_distill_from_run_folder_writes_what_export_reads(data, teacher_file, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    space = SearchSpace(tiny_teacher(data).spec)
    top = [{"arch": space.smallest_arch().to_dict()}, {"arch": STUDENT.to_dict()}]
    (run / "search.json").write_text(json.dumps({"teacher": {"path": str(teacher_file),
                                                             "sha256": file_sha256(teacher_file)},
                                                 "task": TASK, "data_dir": None, "resolution": 8, "top": top}))
    target = target_from_run(run, rank=2)
    log = run_distill(target, KDConfig(recipe=Recipe(epochs=1, batch_size=64, lr=0.01)), cache_dir=None)
    from dass_edge.models import load_checkpoint

    model, meta = load_checkpoint(run / "rank2" / "student.safetensors")
    assert model.spec.stages == STUDENT.widths
    for k in ("task", "data_dir", "teacher_sha256", "arch", "val_acc", "final_val_acc", "test_acc", "recipe"):
        assert k in meta, k
    assert meta["arch"] == STUDENT.to_dict() and meta["task"] == TASK
    saved = json.loads((run / "rank2" / "distill.json").read_text())
    assert saved["checkpoint"] == "student.safetensors" and len(saved["history"]) == 1
    assert saved["val_acc"] == log["val_acc"] == meta["val_acc"]
    with pytest.raises(DassEdgeError, match="outside 1..2"):
        target_from_run(run, rank=3)


def test_cli_distill_arch(teacher_file, tmp_path, capsys):
    out = tmp_path / "student"
    code, stdout, _ = run_cli(["distill", "--arch", STUDENT.key(), "--teacher", str(teacher_file), "--out", str(out),
                               "--epochs", "1", "--json"], capsys)
    assert code == 0, stdout
    log = json.loads(stdout)
    assert log["task"] == TASK and log["arch_key"] == STUDENT.key() and log["checkpoint"] == "student.safetensors"
    assert (out / "student.safetensors").is_file() and not (out / "distill.partial.pt").exists()


def test_cli_short_distill_says_it_is_a_smoke_run(teacher_file, tmp_path, capsys):
    from dass_edge.commands.distill import _predicted

    out = tmp_path / "student"
    code, stdout, err = run_cli(["distill", "--arch", STUDENT.key(), "--teacher", str(teacher_file), "--out",
                                 str(out), "--epochs", "1"], capsys)
    assert code == 0, err
    assert "note: 1 epoch is a smoke run" in stdout and "run without --epochs (30)" in stdout
    run = tmp_path / "run"
    run.mkdir()
    (run / "search.json").write_text(json.dumps({"top": [{"predicted_acc": 86.35}, {"predicted_acc": 85.0}]}))
    assert _predicted(run, 2) == 85.0 and _predicted(run, 3) is None and _predicted(tmp_path, 1) is None


@pytest.mark.parametrize("args, message", [
    (["--task", "no-such-task"], "unknown task"),
    (["--task", "textures"], "the teacher has 8 classes but task textures has 12"),
    (["--arch", "d3-1-1-1_w8.8.8-16-16-32"], "does not fit the teacher"),
    (["--out", "/proc/no/such"], "cannot create output folder"),
])
def test_cli_distill_bad_input(teacher_file, tmp_path, capsys, args, message):
    base = {"--arch": STUDENT.key(), "--teacher": str(teacher_file), "--out": str(tmp_path / "o"), "--epochs": "1"}
    for k, v in zip(args[::2], args[1::2]):
        base[k] = v
    code, _, err = run_cli(["distill", *[x for kv in base.items() for x in kv]], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_unwritable_cache_dir_still_distills(data):
    teacher = tiny_teacher(data)
    r = distill(teacher, STUDENT, data, KDConfig(recipe=Recipe(epochs=1, batch_size=128, lr=0.01)),
                teacher_sha256="abc", cache_dir="/proc/no/cache")
    assert r.cache["used"] and r.cache["misses"] == 0 and not r.cache["hit"]

"""``--train-device`` names the training accelerator; ``--device`` on a training command is its deprecated spelling.

``--device`` means the deployment target everywhere else (profile, search, export), so training commands take
``--train-device``; the old spelling still works for one release and says so in one stderr line.
"""

import json

import pytest
import torch
from conftest import run_cli
from safetensors.torch import load_file

from dass_edge.data import load_task
from dass_edge.metadb import read_rows
from dass_edge.models import build_model, save_checkpoint
from dass_edge.space import Arch
from dass_edge.training.teacher import teacher_spec_for

pytestmark = pytest.mark.usefixtures("one_thread")

TASK = "count-dots"
RES = 8
STUDENT = Arch((1, 1, 1, 2), ((4,), (10,), (8,), (32, 32)))
WARNING = "warning: --device for the training accelerator is deprecated; use --train-device"


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    """A teachers folder holding one tiny untrained teacher for the test task."""
    folder = tmp_path_factory.mktemp("teachers")
    torch.manual_seed(0)
    model = build_model(teacher_spec_for(load_task(TASK, resolution=RES), widths=(8, 16, 16, 32),
                                         depths=(2, 1, 1, 2))).eval()
    save_checkpoint(folder / f"{TASK}.safetensors", model, {"task": TASK, "model": "tiny", "val_acc": 12.5})
    return folder


def _distill(teachers, out, *device_args):
    return ["distill", "--arch", STUDENT.key(), "--teacher", str(teachers / f"{TASK}.safetensors"), "--out", str(out),
            "--epochs", "1", "--json", *device_args]


def _build(teachers, db, *device_args):
    return ["meta", "build-db", "--tasks", TASK, "--students-per-task", "1", "--epochs", "1", "--resolution",
            str(RES), "--teachers", str(teachers), "--workers", "0", "--out", str(db), "--json", *device_args]


def test_distill_old_spelling_warns_once_and_trains_the_same_student(teachers, tmp_path, capsys):
    code, out_new, err_new = run_cli(_distill(teachers, tmp_path / "new", "--train-device", "cpu"), capsys)
    assert code == 0, err_new
    assert "deprecated" not in err_new
    code, out_old, err_old = run_cli(_distill(teachers, tmp_path / "old", "--device", "cpu"), capsys)
    assert code == 0, err_old
    assert [line for line in err_old.splitlines() if "deprecated" in line] == [WARNING]
    new, old = json.loads(out_new), json.loads(out_old)
    assert new["val_acc"] == old["val_acc"] and new["arch_key"] == old["arch_key"] == STUDENT.key()
    new_w, old_w = (load_file(tmp_path / d / "student.safetensors") for d in ("new", "old"))
    assert new_w.keys() == old_w.keys() and all(torch.equal(new_w[k], old_w[k]) for k in new_w)


def test_build_db_old_spelling_warns_and_records_the_device(teachers, tmp_path, capsys):
    db = tmp_path / "db.jsonl"
    code, out, err = run_cli(_build(teachers, db, "--device", "cpu"), capsys)
    assert code == 0, err
    assert [line for line in err.splitlines() if "deprecated" in line] == [WARNING]
    assert json.loads(out)["rows"] == 1
    rows = read_rows(db)
    assert [r["device"] for r in rows] == ["cpu"]  # the row format is unchanged: it still records "device"
    code, out, err = run_cli(_build(teachers, db, "--train-device", "cpu"), capsys)  # rerun: nothing left to do
    assert code == 0 and "deprecated" not in err and json.loads(out)["added"] == 0


@pytest.mark.parametrize("command", ["distill", "build-db"])
@pytest.mark.parametrize("args, message", [
    (["--train-device", "gpu0"], "--train-device 'gpu0': training runs on cpu, cuda or cuda:N"),
    (["--device", "jetson"], "--device 'jetson': training runs on cpu, cuda or cuda:N"),
    (["--train-device", "cpu", "--device", "cpu"], "give the training accelerator once"),
])
def test_bad_training_device_is_one_line(teachers, tmp_path, capsys, command, args, message):
    out = tmp_path / "out"
    argv = _distill(teachers, out, *args) if command == "distill" else _build(teachers, out / "db.jsonl", *args)
    code, stdout, err = run_cli(argv, capsys)
    assert code == 2 and stdout == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert not out.exists()

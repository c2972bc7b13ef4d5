import json

from conftest import run_cli

from dass_edge import __version__


def test_version(capsys):
    code, out, _ = run_cli(["--version"], capsys)
    assert code == 0 and out.strip() == f"dass-edge {__version__}"


def test_help_lists_commands(capsys):
    code, out, _ = run_cli(["--help"], capsys)
    assert code == 0
    for cmd in ("data", "teacher"):
        assert cmd in out


def test_no_arguments_prints_help(capsys):
    code, out, _ = run_cli([], capsys)
    assert code == 0 and "Usage" in out


def test_data_list_json(capsys):
    code, out, _ = run_cli(["data", "list", "--json"], capsys)
    rows = json.loads(out)
    assert code == 0 and len(rows) >= 12
    for r in rows:
        assert {"name", "num_classes", "resolution", "train", "val", "test"} <= set(r)
        assert r["resolution"] == 32


def test_data_show_writes_png(tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "grid.png"
    code, _, _ = run_cli(["data", "show", "count-dots", "--out", str(out), "--per-class", "3"], capsys)
    assert code == 0
    w, h = Image.open(out).size
    assert (w, h) == (3 * 34 * 2, 8 * 34 * 2)


def test_teacher_train_one_epoch_and_reload(tmp_path, capsys):
    from dass_edge.models import load_checkpoint

    out = tmp_path / "t.safetensors"
    code, stdout, err = run_cli(["teacher", "train", "--task", "count-dots", "--epochs", "1", "--resolution", "16",
                                 "--widths", "8,8,16,16", "--depths", "1,1,1,1", "--out", str(out), "--json"], capsys)
    assert code == 0, err
    meta = json.loads(stdout)
    model, saved = load_checkpoint(out)
    assert model.spec.num_classes == 8 and model.spec.widths == (8, 8, 16, 16)
    assert saved["test_acc"] == meta["test_acc"] and 0 <= meta["test_acc"] <= 100
    assert saved["task"] == "count-dots" and model.spec.class_names[0] == "1"
    assert not list(tmp_path.glob("*.partial.pt"))
    from dass_edge.training.teacher import teacher_learned

    # one epoch rarely gets far from chance (1/8): the warning is on stderr exactly when the teacher did not learn
    assert ("warning: this teacher did not learn" in err) == (not teacher_learned(meta["val_acc"], 8))


def test_bad_inputs_one_line_exit_2(tmp_path, capsys):
    bad = tmp_path / "corrupt.safetensors"
    bad.write_bytes(b"\x00" * 20)
    cases = [
        ["teacher", "train", "--data", "/nonexistent", "--out", str(tmp_path / "x.safetensors")],
        ["teacher", "info", str(bad)],
        ["teacher", "train", "--task", "nope", "--out", str(tmp_path / "x.safetensors")],
        ["teacher", "train", "--task", "shapes", "--widths", "1,2", "--out", str(tmp_path / "x.safetensors")],
        ["data", "show", "nope"],
        ["data", "list", "--bogus"],
    ]
    for args in cases:
        code, _, err = run_cli(args, capsys)
        assert code == 2, args
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, err)
        assert "Traceback" not in err
    assert not list(tmp_path.glob("x.safetensors*"))

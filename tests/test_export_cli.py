"""``dass-edge export`` end to end: run folders and checkpoints, export.json, messages, and bad input."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import onnx
import pytest
from conftest import run_cli
from dass_edge.exporters.int8 import qdq_summary
from dass_edge.exporters.onnx_export import read_metadata
from dass_edge.exporters.source import load_source
from test_export_support import ARCH, TEACHER_SHA, leftovers, make_run, make_student

from dass_edge.errors import DassEdgeError
from dass_edge.export import FORMATS, export
from dass_edge.space import Arch

ROW_KEYS = {"format", "path", "bytes", "parity_max_abs", "top1", "latency_ms", "predicted_latency_ms"}


@pytest.fixture(scope="module")
def int8_export(tmp_path_factory):
    """One INT8 export through the CLI (--json), shared by the checks below; returns (root, code, stdout, stderr)."""
    from dass_edge.cli import main

    root = tmp_path_factory.mktemp("int8")
    ckpt = make_student(root / "student.safetensors")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exc:
        main(["export", str(ckpt), "--format", "onnx-int8", "--calib", "300", "--json"])
    return root, int(exc.value.code or 0), out.getvalue(), err.getvalue()


def test_int8_json_record(int8_export):
    root, code, out, _ = int8_export
    assert code == 0
    record = json.loads(out)  # --json: nothing but export.json on stdout
    assert record == json.loads((root / "export" / "export.json").read_text())
    fp32, int8 = record["artifacts"]
    assert ROW_KEYS <= set(fp32) and ROW_KEYS <= set(int8)
    assert (fp32["format"], int8["format"], int8["made_from"]) == ("onnx", "onnx-int8", "student.onnx")
    assert fp32["parity_max_abs"] <= 1e-4 and fp32["top1"] == record["reference_top1"]
    assert isinstance(int8["top1"], float) and int8["parity_max_abs"] > fp32["parity_max_abs"]
    for row in (fp32, int8):
        assert Path(row["path"]).stat().st_size == row["bytes"] > 0
    assert record["calibration"]["images"] == 300 and record["calibration"]["split"] == "train"
    assert record["target"]["device"] == "cpu" and record["target"]["threads"] == 1
    for row in (fp32, int8):  # measured on the cpu profile; values depend on the machine, so only their presence
        assert row["latency_ms"] > 0 and row["latency_p90_ms"] >= row["latency_ms"]
    assert int8["predicted_latency_ms"] is None  # the cpu table is FP32: it predicts the FP32 row only
    if record["predicted_latency"] is None:
        assert fp32["predicted_latency_ms"] is None and any("no latency prediction" in n for n in record["notes"])
    else:
        assert fp32["predicted_latency_ms"] == record["predicted_latency"]["p50_ms"]
    q = int8["quantization"]
    assert (q["activation_type"], q["weight_type"], q["per_channel"], q["target"]) == ("QUInt8", "QInt8", True, "x86")
    assert record["task"] == {"name": "count-dots", "verify_split": "test", "verify_images": 320}
    meta = record["metadata"]
    assert meta["arch"] == ARCH.to_dict() and meta["teacher_sha256"] == TEACHER_SHA and meta["resolution"] == 32
    assert len(meta["class_names"]) == 8 and len(meta["mean"]) == 3 and meta["version"]


def test_int8_artifacts_on_disk(int8_export):
    root, *_ = int8_export
    export_dir = root / "export"
    assert sorted(p.name for p in export_dir.iterdir()) == ["export.json", "student.int8.onnx", "student.onnx"]
    assert leftovers(root) == []
    meta = read_metadata(export_dir / "student.int8.onnx")
    assert json.loads(meta["arch"]) == ARCH.to_dict() and meta["teacher_sha256"] == TEACHER_SHA
    assert json.loads(meta["mean"]) and meta["resolution"] == "32" and meta["precision"] == "int8"
    assert len(json.loads(meta["class_names"])) == 8
    summary = qdq_summary(export_dir / "student.int8.onnx")
    assert summary["activation_types"] == {"UINT8": summary["quantize_nodes"]}
    onnx.checker.check_model(str(export_dir / "student.onnx"), full_check=True)


@pytest.mark.slow
def test_table_output_for_fp16(tmp_path, capsys):
    ckpt = make_student(tmp_path / "s.safetensors")
    args = ["export", str(ckpt), "--format", "onnx-fp16", "--no-latency", "--out", str(tmp_path / "o")]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    assert "onnx-fp16" in out and "pytorch" in out and "export.json" in out
    record = json.loads((tmp_path / "o" / "export.json").read_text())
    fp32, fp16 = record["artifacts"]
    assert fp16["made_from"] == fp32["file"] == "s.onnx"
    assert 0 < fp16["parity_max_abs"] <= fp16["parity_tolerance"] and fp16["precision"] == "fp16"


@pytest.mark.slow
def test_tensorrt_without_tensorrt_writes_qdq_onnx_and_prints_commands(tmp_path, capsys):
    from dass_edge.exporters.tensorrt import tensorrt_availability

    if tensorrt_availability().ok:
        pytest.skip("TensorRT and a GPU are present: the engine is built instead")
    ckpt = make_student(tmp_path / "student.safetensors")
    code, out, err = run_cli(["export", str(ckpt), "--format", "tensorrt", "--no-latency", "--calib", "64"], capsys)
    assert code == 0, err
    lines = out.splitlines()
    message = [ln for ln in lines if ln.startswith("TensorRT engine not built:")]
    assert len(message) == 1 and "not installed" in message[0]
    assert any(ln.strip().startswith("trtexec --onnx=student.int8-trt.onnx") for ln in lines)
    assert any(ln.strip().startswith("python3 trt_build.py --onnx student.int8-trt.onnx") for ln in lines)
    folder = tmp_path / "export"
    names = {p.name for p in folder.iterdir()}
    assert {"student.int8-trt.onnx", "student.onnx", "trt_build.py", "export.json"} <= names
    summary = qdq_summary(folder / "student.int8-trt.onnx")
    assert summary["activation_types"].keys() == {"INT8"} and summary["activation_zero_points_all_zero"]
    assert summary["adds_with_qdq_inputs"] == summary["adds"] > 0
    record = json.loads((folder / "export.json").read_text())
    assert record["tensorrt"]["engine"] is None and record["tensorrt"]["commands"]["trtexec"] in out
    assert [a["format"] for a in record["artifacts"]] == ["onnx", "onnx-int8"]


@pytest.mark.slow
def test_run_folder_rank_goes_to_rank_export_folder(tmp_path, capsys):
    run = make_run(tmp_path)
    code, out, err = run_cli(["export", str(run), "--rank", "2", "--no-latency", "--json"], capsys)
    assert code == 0, err
    record = json.loads(out)
    assert record["source"]["rank"] == 2 and record["source"]["run"] == str(run.resolve())
    assert (run / "rank2" / "export" / "student.onnx").is_file() and not (run / "rank1" / "export").exists()


# --- bad input: one line on stderr, exit code 2, nothing written ------------------------------------
def _assert_one_line_error(code: int, out: str, err: str, *needles: str) -> None:
    assert code == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1, err
    for needle in needles:
        assert needle in err


def test_unknown_format(tmp_path, capsys):
    ckpt = make_student(tmp_path / "s.safetensors")
    _assert_one_line_error(*run_cli(["export", str(ckpt), "--format", "tflite"], capsys), "unknown format 'tflite'",
                           ", ".join(FORMATS))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.safetensors"]


def test_checkpoint_arch_mismatch(tmp_path, capsys):
    other = Arch((1, 1, 1, 1), ((8,), (16,), (32,), (128,)))
    ckpt = make_student(tmp_path / "s.safetensors", meta={"arch": other.to_dict()})
    _assert_one_line_error(*run_cli(["export", str(ckpt)], capsys), "checkpoint/arch mismatch", other.key(), ARCH.key())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.safetensors"]


def test_run_folder_distill_record_arch_mismatch(tmp_path, capsys):
    run = make_run(tmp_path, ranks=(1,))
    other = Arch((2, 2, 2, 1), ((8, 8), (16, 16), (32, 32), (128,)))
    (run / "rank1" / "distill.json").write_text(json.dumps({"arch": other.to_dict()}))
    _assert_one_line_error(*run_cli(["export", str(run)], capsys), "checkpoint/arch mismatch", "distill.json")


def test_run_folder_search_record_arch_mismatch(tmp_path, capsys):
    run = make_run(tmp_path, ranks=(1,))
    other = Arch((2, 2, 2, 1), ((8, 8), (16, 16), (32, 32), (128,)))
    (run / "search.json").write_text(json.dumps({"top": [{"arch": other.to_dict()}]}))
    _assert_one_line_error(*run_cli(["export", str(run)], capsys), "checkpoint/arch mismatch", "search.json (rank 1)")


def test_missing_calibration_data(tmp_path, capsys):
    ckpt = make_student(tmp_path / "s.safetensors", task=None)
    _assert_one_line_error(*run_cli(["export", str(ckpt), "--format", "onnx-int8"], capsys),
                           "no images to calibrate", "--task", "--data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.safetensors"]


def test_wrong_task_for_the_classifier(tmp_path, capsys):
    ckpt = make_student(tmp_path / "s.safetensors", task="shapes")  # 12 classes, the student has 8
    _assert_one_line_error(*run_cli(["export", str(ckpt)], capsys), "12 classes", "predicts 8")


def test_unwritable_output_folder(tmp_path, capsys):
    ckpt = make_student(tmp_path / "s.safetensors")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    _assert_one_line_error(*run_cli(["export", str(ckpt), "--out", str(blocker / "out")], capsys), str(blocker))
    _assert_one_line_error(*run_cli(["export", str(ckpt), "--out", str(blocker)], capsys), "is a file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "s.safetensors"]


def test_missing_source_and_rank(tmp_path, capsys):
    _assert_one_line_error(*run_cli(["export", str(tmp_path / "nope")], capsys), "does not exist")
    run = make_run(tmp_path, ranks=(1,))
    # the run has one top student: the hint is the valid range, not 'dass-edge distill RUN --rank 3' (issue 16)
    _assert_one_line_error(*run_cli(["export", str(run), "--rank", "3"], capsys), "--rank 3 is outside 1..1")


@pytest.mark.parametrize("args,needle", [(["--calib", "0"], "--calib"), (["--calib-method", "kl"], "kl"),
                                         (["--precision", "int4"], "int4")])
def test_bad_options(tmp_path, capsys, args, needle):
    ckpt = make_student(tmp_path / "s.safetensors")
    _assert_one_line_error(*run_cli(["export", str(ckpt), *args], capsys), needle)


@pytest.mark.slow
def test_failed_parity_leaves_nothing_behind(tmp_path, monkeypatch):
    import dass_edge.export as lib

    monkeypatch.setattr(lib, "FP32_TOLERANCE", -1.0)  # every artifact now "fails" parity after being written
    ckpt = make_student(tmp_path / "s.safetensors")
    with pytest.raises(DassEdgeError, match="fails the parity check"):
        export(ckpt, "onnx", out=tmp_path / "new" / "out", measure=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.safetensors"]  # created folders removed too
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "old.txt").write_text("x")
    with pytest.raises(DassEdgeError):
        export(ckpt, "onnx", out=tmp_path / "kept", measure=False)
    assert [p.name for p in (tmp_path / "kept").iterdir()] == ["old.txt"]


def test_load_source_forms(tmp_path):
    run = make_run(tmp_path, ranks=(1, 2))
    assert load_source(run).checkpoint == run / "rank1" / "student.safetensors"
    src = load_source(run / "rank2")
    assert (src.rank, src.run_dir, src.default_out) == (2, run, run / "rank2" / "export")
    ckpt = load_source(run / "rank1" / "student.safetensors")
    assert ckpt.run_dir is None and ckpt.arch == ARCH
    with pytest.raises(DassEdgeError, match="neither a run folder"):
        load_source(tmp_path)


@pytest.mark.slow
def test_prediction_sits_next_to_the_matching_precision(tmp_path, monkeypatch):
    import dass_edge.latency

    class Table:
        def predict(self, spec):
            assert spec.stages == ARCH.widths
            return {"p50_ms": 1.25, "p90_ms": 1.5, "lut_ms": 1.0}

    monkeypatch.setattr(dass_edge.latency, "load_table", lambda device, resolution, *a, **k: Table())
    monkeypatch.setattr(dass_edge.latency, "measure_onnx", lambda path, profile, **k: {"p50_ms": 0.5, "p90_ms": 0.6})
    ckpt = make_student(tmp_path / "s.safetensors")
    record = export(ckpt, "onnx-fp16", device="cpu")
    fp32, fp16 = record["artifacts"]
    assert (fp32["predicted_latency_ms"], fp32["predicted_latency_p90_ms"]) == (1.25, 1.5)
    assert fp16["predicted_latency_ms"] is None and fp16["latency_ms"] == fp32["latency_ms"] == 0.5
    assert record["predicted_latency"]["precision"] == "fp32"


@pytest.mark.slow
def test_tensorrt_over_host_records_the_remote_engine(tmp_path, monkeypatch):
    import dass_edge.exporters.remote as remote

    calls = {}

    def fake_build(host, onnx_path, engine_path, builder, *, opt_batch=1, target=None, **kw):
        calls.update(host=host, onnx=onnx_path.name, builder=builder.is_file(), label=target.label)
        engine_path.write_bytes(b"ENGINE")
        return "10.3.0"

    monkeypatch.setattr(remote, "build_engine_remote", fake_build)
    ckpt = make_student(tmp_path / "s.safetensors")
    record = export(ckpt, "tensorrt", device="jetson-orin-nano", host="nvidia@jetson.local", measure=False)
    assert calls == {"host": "nvidia@jetson.local", "onnx": "s.fp16.onnx", "builder": True,
                     "label": "nvidia@jetson.local:22"}  # the Orin Nano profile is FP16
    engine = record["artifacts"][-1]
    assert (engine["format"], engine["precision"], engine["made_from"]) == ("tensorrt", "fp16", "s.fp16.onnx")
    trt = record["tensorrt"]
    assert (trt["built_on"], trt["tensorrt_version"]) == ("nvidia@jetson.local", "10.3.0")
    assert (tmp_path / "export" / "s.fp16.engine").read_bytes() == b"ENGINE"
    assert any("not verified here" in n for n in record["notes"])

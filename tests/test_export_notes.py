"""What ``export`` says about its artifacts: a reduced-precision artifact that is not faster than FP32,
and the record of artifacts an earlier export of another format left in the folder."""

from __future__ import annotations

import json

from dass_edge.export import earlier_artifacts, speed_notes


def _row(fmt, precision, file, ms):
    return {"format": fmt, "precision": precision, "file": file, "latency_ms": ms}


def test_int8_not_faster_than_fp32_is_said():
    rows = [_row("onnx", "fp32", "student.onnx", 0.285), _row("onnx-int8", "int8", "student.int8.onnx", 0.296)]
    (note,) = speed_notes(rows, "cpu")
    assert "student.int8.onnx (INT8) is not faster than FP32 on cpu (0.296 vs 0.285 ms p50)" in note
    assert "ship student.onnx" in note
    rows[1]["latency_ms"] = 0.2
    assert speed_notes(rows, "cpu") == []
    rows[1]["latency_ms"] = None  # not measured (--no-latency): nothing to say
    assert speed_notes(rows, "cpu") == []


def test_earlier_artifacts_are_kept_in_the_record(tmp_path):
    int8 = {"format": "dass-edge", "created": "2026-12-01T00:00:00+00:00", "artifacts": [
        {"file": "student.onnx", "top1": 98.0}, {"file": "student.int8.onnx", "top1": 97.5}]}
    (tmp_path / "export.json").write_text(json.dumps({**int8, "format": "onnx-int8"}))
    (tmp_path / "student.onnx").write_bytes(b"x")
    (tmp_path / "student.int8.onnx").write_bytes(b"x")
    kept = earlier_artifacts(tmp_path, ["student.onnx"])  # an FP32 export replaces student.onnx only
    assert [(a["file"], a["export_format"], a["top1"]) for a in kept] == [("student.int8.onnx", "onnx-int8", 97.5)]
    # a third export keeps the record it carried, and drops artifacts whose file is gone
    (tmp_path / "export.json").write_text(json.dumps({"format": "onnx", "artifacts": [{"file": "student.onnx"}],
                                                      "earlier_artifacts": kept}))
    assert [a["file"] for a in earlier_artifacts(tmp_path, ["student.onnx", "student.fp16.onnx"])] == \
        ["student.int8.onnx"]
    (tmp_path / "student.int8.onnx").unlink()
    assert earlier_artifacts(tmp_path, ["student.onnx"]) == []
    assert earlier_artifacts(tmp_path / "nowhere", ["student.onnx"]) == []

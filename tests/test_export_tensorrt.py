"""TensorRT: availability, build commands, the builder's API calls (against a stand-in), a real build where possible."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from dass_edge.exporters.tensorrt import EngineFromOnnx, build_commands, tensorrt_availability
from fake_tensorrt import install_fakes
from test_latency_tensorrt import _dynamic_onnx

from dass_edge.errors import DassEdgeError
from dass_edge.latency.runners import trt_build


def test_build_commands_are_exact():
    cmds = build_commands("student.int8-trt.onnx", "student.int8.engine", resolution=32, opt_batch=4, max_batch=16,
                          precision="int8")
    assert cmds["trtexec"] == (
        "trtexec --onnx=student.int8-trt.onnx --saveEngine=student.int8.engine --stronglyTyped "
        "--minShapes=input:1x3x32x32 --optShapes=input:4x3x32x32 --maxShapes=input:16x3x32x32"
    )
    assert cmds["python"] == ("python3 trt_build.py --onnx student.int8-trt.onnx --engine student.int8.engine "
                              "--precision int8 --opt-batch 4 --max-batch 16")


@pytest.mark.parametrize("precision,flags", [("fp16", "--fp16 "), ("int8", "--int8 --fp16 "), ("fp32", "")])
def test_trtexec_on_tensorrt_8_5_uses_precision_flags_not_strongly_typed(precision, flags):
    """JetPack 5's trtexec (TensorRT 8.5) has no --stronglyTyped; 10 keeps it."""
    old = build_commands("s.onnx", "s.engine", resolution=32, precision=precision, trt_version="8.5.2")["trtexec"]
    assert "--stronglyTyped" not in old and f"--saveEngine=s.engine {flags}--minShapes" in old
    new = build_commands("s.onnx", "s.engine", resolution=32, precision=precision, trt_version="10.3.0")["trtexec"]
    assert "--saveEngine=s.engine --stronglyTyped --minShapes" in new


def test_build_commands_quote_odd_file_names():
    cmds = build_commands("my model.onnx", "my model.engine", resolution=16)
    assert "--onnx='my model.onnx'" in cmds["trtexec"] and "--onnx 'my model.onnx'" in cmds["python"]


def test_availability_says_why_not():
    status = tensorrt_availability()
    assert isinstance(status.ok, bool) and status.reason
    if not status.ok:
        assert "TensorRT" in status.reason or "GPU" in status.reason


@pytest.mark.skipif(tensorrt_availability().ok, reason="TensorRT and a GPU are present; the missing path is moot")
def test_engine_loader_without_tensorrt_is_a_clear_error(tmp_path):
    onnx_path = tmp_path / "m.onnx"
    onnx_path.write_bytes(b"")
    if "tensorrt" in sys.modules or _has_tensorrt():
        pytest.skip("tensorrt is importable here (but no GPU)")
    with pytest.raises(DassEdgeError, match="tensorrt is not available here.*dass-edge\\[tensorrt\\]"):
        EngineFromOnnx(onnx_path, tmp_path / "m.engine")()


def _has_tensorrt() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorrt") is not None


@pytest.mark.parametrize("version,network_flags,builder_flags", [("10.9.0", 1 << 1, []),
                                                                 ("8.5.2", 1 << 0, ["fp16", "int8"])])
def test_one_builder_for_tensorrt_10_and_8_5(tmp_path, monkeypatch, version, network_flags, builder_flags):
    """10: strongly typed, no precision flags; 8.5 (JetPack 5): explicit batch plus the precision's flags."""
    log, _ = install_fakes(monkeypatch, version=version)
    onnx_path = _dynamic_onnx(tmp_path / "m.onnx")
    out = trt_build.write_engine(str(onnx_path), str(tmp_path / "m.engine"), "int8", opt_batch=4, max_batch=16)
    assert Path(out).read_bytes().startswith(b"([('input'") and log["parsed"] == 1
    assert log["flags"] == [network_flags] and log["builder_flags"] == builder_flags
    assert log["profiles"] == [{"input": ((1, 4), (4, 4), (16, 4))}] and log["workspace"] == 1024 << 20
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.engine", "m.onnx"]


@pytest.mark.parametrize("parse_ok,build_ok,match", [(False, True, "could not parse.*unsupported op Foo"),
                                                     (True, False, "failed to build")])
def test_builder_failures_are_reported_and_leave_no_engine(tmp_path, monkeypatch, parse_ok, build_ok, match):
    install_fakes(monkeypatch, parse_ok=parse_ok, build_ok=build_ok)
    _dynamic_onnx(tmp_path / "m.onnx")
    with pytest.raises(trt_build.TrtBuildError, match=match):
        trt_build.write_engine(str(tmp_path / "m.onnx"), str(tmp_path / "m.engine"))
    assert rc_of_main(tmp_path) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def rc_of_main(tmp_path: Path) -> int:
    return trt_build.main(["--onnx", str(tmp_path / "m.onnx"), "--engine", str(tmp_path / "m.engine")])


def test_engine_loader_wraps_build_errors(tmp_path, monkeypatch):
    install_fakes(monkeypatch, parse_ok=False)
    _dynamic_onnx(tmp_path / "m.onnx")
    with pytest.raises(DassEdgeError, match="could not parse"):
        EngineFromOnnx(tmp_path / "m.onnx", tmp_path / "m.engine")()


def test_trt_build_is_self_contained():
    """The builder is copied to devices without dass-edge: it may import only the stdlib and tensorrt."""
    source = Path(trt_build.__file__).read_text()
    assert "dass_edge" not in source
    imports = [ln.split()[1] for ln in source.splitlines() if ln.strip().startswith(("import ", "from "))]
    assert set(imports) <= {"__future__", "argparse", "os", "sys", "tempfile", "tensorrt"}


@pytest.mark.slow
@pytest.mark.skipif(not tensorrt_availability().ok, reason=tensorrt_availability().reason)
def test_real_engine_build_and_parity(tmp_path):  # pragma: no cover - needs TensorRT and a GPU
    pytest.importorskip("pycuda")
    import torch
    from dass_edge.exporters.compare import Comparator
    from dass_edge.exporters.int8 import QdqFromOnnx, quant_config
    from dass_edge.exporters.onnx_export import OnnxFromTorch
    from test_export_support import ARCH, teacher

    from dass_edge.latency.runners import TorchRunner, TrtRunner
    from dass_edge.models import remap

    student = remap(teacher(), ARCH).eval()
    x = torch.randn(64, 3, 32, 32).numpy()
    fp32 = OnnxFromTorch(student, tmp_path / "s.onnx", 32)()
    qdq = QdqFromOnnx(fp32, tmp_path / "s.trt.onnx", x, quant_config("tensorrt"))()
    engine = EngineFromOnnx(qdq, tmp_path / "s.engine", precision="int8")()
    ref, trt = Comparator.run([TorchRunner(student, threads=None), TrtRunner(engine)], x)
    assert trt.agreement >= 50.0


class _LocalSsh:
    """Stands in for ``SshTarget``: the "device" is a local folder, commands run here, nothing is sent anywhere."""

    python, connect_timeout, label = "python3", 5, "user@device:22"

    def __init__(self, root: Path) -> None:
        self.root, self.calls = root, []

    def open_workdir(self) -> str:
        path = self.root / "remote"
        path.mkdir()
        return str(path)

    def upload(self, workdir: str, files) -> None:
        for name, content in files:
            self.calls.append(("upload", name))
            (Path(workdir) / name).write_bytes(content.read_bytes() if isinstance(content, Path) else content)

    def run(self, argv: list[str], timeout: float | None = None) -> str:
        self.calls.append(("run", argv))
        if argv[1].endswith("trt_build.py"):
            Path(argv[argv.index("--engine") + 1]).write_bytes(bytes(range(256)))  # binary, not text
            return ""
        return "10.3.0\n"

    def ssh_argv(self, argv: list[str]) -> list[str]:
        return argv  # "ssh host cat -- file" becomes a local cat

    def cleanup(self, workdir: str) -> None:
        self.calls.append(("cleanup", workdir))


def test_remote_build_uploads_builds_fetches_and_cleans_up(tmp_path):
    from dass_edge.exporters.remote import build_engine_remote

    onnx_path, builder = tmp_path / "s.int8-trt.onnx", tmp_path / "trt_build.py"
    onnx_path.write_bytes(b"ONNX")
    builder.write_text(Path(trt_build.__file__).read_text())
    ssh = _LocalSsh(tmp_path)
    version = build_engine_remote("user@device", onnx_path, tmp_path / "s.int8.engine", builder, opt_batch=2,
                                  precision="int8", target=ssh)
    assert version == "10.3.0" and (tmp_path / "s.int8.engine").read_bytes() == bytes(range(256))
    assert [c[1] for c in ssh.calls if c[0] == "upload"] == ["s.int8-trt.onnx", "trt_build.py"]
    build = next(c[1] for c in ssh.calls if c[0] == "run" and c[1][1].endswith("trt_build.py"))
    remote = str(tmp_path / "remote")
    assert build == ["python3", f"{remote}/trt_build.py", "--onnx", f"{remote}/s.int8-trt.onnx", "--engine",
                     f"{remote}/s.int8.engine", "--precision", "int8", "--opt-batch", "2", "--max-batch", "32"]
    assert ssh.calls[-1] == ("cleanup", remote)

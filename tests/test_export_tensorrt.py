"""TensorRT: availability, build commands, the builder's API calls (against a stand-in), a real build where possible."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
from dass_edge.exporters import trt_build
from dass_edge.exporters.tensorrt import EngineFromOnnx, build_commands, tensorrt_availability

from dass_edge.errors import DassEdgeError


def test_build_commands_are_exact():
    cmds = build_commands("student.int8-trt.onnx", "student.int8.engine", resolution=32, opt_batch=4, max_batch=16)
    assert cmds["trtexec"] == (
        "trtexec --onnx=student.int8-trt.onnx --saveEngine=student.int8.engine --stronglyTyped "
        "--minShapes=input:1x3x32x32 --optShapes=input:4x3x32x32 --maxShapes=input:16x3x32x32"
    )
    assert cmds["python"] == ("python3 trt_build.py --onnx student.int8-trt.onnx --engine student.int8.engine "
                              "--opt-batch 4 --max-batch 16")


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


class _FakeTrt(types.ModuleType):
    """Just enough of the TensorRT 10 Python API to record what the builder asks for."""

    def __init__(self, parse_ok: bool = True, build_ok: bool = True) -> None:
        super().__init__("tensorrt")
        self.__version__ = "10.9.0"
        self.calls: dict = {"shapes": {}}
        fake = self

        class Logger:
            WARNING = 2

            def __init__(self, level):
                pass

        class Tensor:
            name, shape = "input", (-1, 3, 32, 32)

        class Network:
            num_inputs = 1

            def get_input(self, i):
                return Tensor()

        class Parser:
            num_errors = 0 if parse_ok else 1

            def __init__(self, network, logger):
                pass

            def parse(self, data):
                fake.calls["parsed"] = data
                return parse_ok

            def get_error(self, i):
                return "unsupported op Foo"

        class Profile:
            def set_shape(self, name, lo, opt, hi):
                fake.calls["shapes"][name] = (lo, opt, hi)

        class Config:
            def set_memory_pool_limit(self, pool, size):
                fake.calls["workspace"] = size

            def add_optimization_profile(self, profile):
                fake.calls["profiles"] = fake.calls.get("profiles", 0) + 1

            def set_flag(self, flag):  # must never be called for a strongly typed network
                fake.calls["flags"] = flag

        class Builder:
            def __init__(self, logger):
                pass

            def create_network(self, flags):
                fake.calls["network_flags"] = flags
                return Network()

            def create_builder_config(self):
                return Config()

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, network, config):
                return b"ENGINE" if build_ok else None

        self.Logger, self.Builder, self.OnnxParser = Logger, Builder, Parser
        self.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=5)
        self.MemoryPoolType = types.SimpleNamespace(WORKSPACE=0)


def test_builder_uses_a_strongly_typed_network_and_a_dynamic_batch_profile(tmp_path, monkeypatch):
    fake = _FakeTrt()
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    onnx_path = tmp_path / "m.onnx"
    onnx_path.write_bytes(b"ONNX")
    out = trt_build.build_engine(str(onnx_path), str(tmp_path / "m.engine"), opt_batch=4, max_batch=16)
    assert Path(out).read_bytes() == b"ENGINE" and fake.calls["parsed"] == b"ONNX"
    assert fake.calls["network_flags"] == 1 << 5 and "flags" not in fake.calls
    assert fake.calls["shapes"]["input"] == ((1, 3, 32, 32), (4, 3, 32, 32), (16, 3, 32, 32))
    assert fake.calls["profiles"] == 1 and fake.calls["workspace"] == 1024 << 20
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.engine", "m.onnx"]


@pytest.mark.parametrize("parse_ok,build_ok,match", [(False, True, "could not parse.*unsupported op Foo"),
                                                     (True, False, "failed to build")])
def test_builder_failures_are_reported_and_leave_no_engine(tmp_path, monkeypatch, parse_ok, build_ok, match):
    monkeypatch.setitem(sys.modules, "tensorrt", _FakeTrt(parse_ok, build_ok))
    (tmp_path / "m.onnx").write_bytes(b"ONNX")
    with pytest.raises(trt_build.TrtBuildError, match=match):
        trt_build.build_engine(str(tmp_path / "m.onnx"), str(tmp_path / "m.engine"))
    assert rc_of_main(tmp_path) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def rc_of_main(tmp_path: Path) -> int:
    return trt_build.main(["--onnx", str(tmp_path / "m.onnx"), "--engine", str(tmp_path / "m.engine")])


def test_engine_loader_wraps_build_errors(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", _FakeTrt(parse_ok=False))
    (tmp_path / "m.onnx").write_bytes(b"ONNX")
    with pytest.raises(DassEdgeError, match="could not parse"):
        EngineFromOnnx(tmp_path / "m.onnx", tmp_path / "m.engine")()


def test_trt_build_is_self_contained():
    """The builder is copied to devices without dass-edge: it may import only the stdlib and tensorrt."""
    source = Path(trt_build.__file__).read_text()
    assert "dass_edge" not in source.replace("dass_edge.exporters.trt_build", "")
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
    from dass_edge.exporters.runners import TorchRunner
    from dass_edge.exporters.tensorrt import TrtRunner
    from test_export_support import ARCH, teacher

    from dass_edge.models import remap

    student = remap(teacher(), ARCH).eval()
    x = torch.randn(64, 3, 32, 32).numpy()
    fp32 = OnnxFromTorch(student, tmp_path / "s.onnx", 32)()
    qdq = QdqFromOnnx(fp32, tmp_path / "s.trt.onnx", x, quant_config("tensorrt"))()
    engine = EngineFromOnnx(qdq, tmp_path / "s.engine")()
    ref, trt = Comparator.run([TorchRunner(student), TrtRunner(engine)], x)
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
                                  target=ssh)
    assert version == "10.3.0" and (tmp_path / "s.int8.engine").read_bytes() == bytes(range(256))
    assert [c[1] for c in ssh.calls if c[0] == "upload"] == ["s.int8-trt.onnx", "trt_build.py"]
    build = next(c[1] for c in ssh.calls if c[0] == "run" and c[1][1].endswith("trt_build.py"))
    remote = str(tmp_path / "remote")
    assert build == ["python3", f"{remote}/trt_build.py", "--onnx", f"{remote}/s.int8-trt.onnx", "--engine",
                     f"{remote}/s.int8.engine", "--opt-batch", "2", "--max-batch", "32"]
    assert ssh.calls[-1] == ("cleanup", remote)

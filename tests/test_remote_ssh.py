"""Remote profiling through a real OpenSSH server on 127.0.0.1 (throwaway keys and known_hosts).

CI installs openssh-server via ``.ci/install_sshd.sh``; elsewhere these tests skip when sshd is missing.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_cli
from test_latency_profile import TINY_TEACHER, tiny_profile

from dass_edge.errors import DassEdgeError
from dass_edge.latency import SshTarget, measure_onnx, parse_host, profile_device
from dass_edge.latency.artifacts import StudentArtifact

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
HAS_TRT = __import__("importlib.util").util.find_spec("tensorrt") is not None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """A real sshd on a free 127.0.0.1 port accepting one throwaway client key for the current user."""
    if not Path(SSHD).exists() or shutil.which("ssh") is None:
        if os.environ.get("CI"):
            pytest.fail("OpenSSH server/client missing in CI: run .ci/install_sshd.sh")
        pytest.skip("OpenSSH server not installed (apt-get install openssh-server)")
    d = tmp_path_factory.mktemp("sshd")
    for name in ("host_key", "client_key", "other_key"):
        _keygen(d / name)
    (d / "authorized_keys").write_text((d / "client_key.pub").read_text())
    os.chmod(d / "authorized_keys", 0o600)
    port = _free_port()
    config = d / "sshd_config"
    config.write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {d / 'host_key'}", f"PidFile {d / 'sshd.pid'}",
        f"AuthorizedKeysFile {d / 'authorized_keys'}", "PubkeyAuthentication yes", "PasswordAuthentication no",
        "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no", "PermitRootLogin prohibit-password",
        "LogLevel ERROR", "",
    ]))
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation directory sshd needs when run as root
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 15
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"sshd exited: {proc.stderr.read().decode()[-500:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.1)
    known = d / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {(d / 'host_key.pub').read_text().split(' ')[0]} "
                     f"{(d / 'host_key.pub').read_text().split(' ')[1]}\n")
    (d / "empty_known_hosts").write_text("")
    yield {"dir": d, "port": port, "user": getpass.getuser(), "known_hosts": known}
    proc.terminate()
    proc.wait(timeout=10)


def _target(sshd, **changes) -> SshTarget:
    kw = {"identity_file": str(sshd["dir"] / "client_key"), "known_hosts": str(sshd["known_hosts"]),
          "config_file": "none", "connect_timeout": 10, "python": sys.executable}
    port = changes.pop("port", sshd["port"])
    kw.update(changes)
    return SshTarget.parse(f"{sshd['user']}@127.0.0.1:{port}", **kw)


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("DASS_EDGE_TABLES", str(tmp_path / "tables"))
    monkeypatch.setenv("DASS_EDGE_PROFILES", str(tmp_path / "profiles"))


def test_parse_host():
    assert parse_host("me@dev:2222") == ("me", "dev", 2222)
    assert parse_host("dev") == (None, "dev", 22)
    assert parse_host("me@[::1]:23") == ("me", "::1", 23)
    for bad in ("-oProxyCommand=evil", "me@", "me@host:0", "a b", "me@ho;st", "me@$(id)"):
        with pytest.raises(DassEdgeError):
            parse_host(bad)


def test_ssh_argv_verifies_host_keys_and_quotes_the_remote_command():
    t = SshTarget.parse("me@dev:2200", known_hosts="/kh", identity_file="/key")
    argv = t.ssh_argv(["python3", "/tmp/a b/agent.pyz", "run", "x; rm -rf ~"])
    assert argv[0] == "ssh" and "StrictHostKeyChecking=yes" in argv and "BatchMode=yes" in argv
    assert "UserKnownHostsFile=/kh" in argv and argv[argv.index("-p") + 1] == "2200"
    assert argv[-3:-1] == ["--", "dev"]
    assert argv[-1] == "python3 '/tmp/a b/agent.pyz' run 'x; rm -rf ~'"


def test_remote_profile_has_the_same_schema_as_a_local_one(sshd, tmp_path):
    profile = tiny_profile(tmp_path / "profiles")
    remote = profile_device(str(profile), TINY_TEACHER, target=_target(sshd), out=tmp_path / "remote.json")
    local = profile_device(str(profile), TINY_TEACHER, out=tmp_path / "local.json")
    r, lo = json.loads(remote.path.read_text()), json.loads(local.path.read_text())

    def shape(d):
        return {k: (sorted(v) if isinstance(v, dict) else type(v).__name__) for k, v in d.items()}

    assert shape(r) == shape(lo)
    assert set(r["entries"]) == set(lo["entries"])
    assert shape(next(iter(r["entries"].values()))) == shape(next(iter(lo["entries"].values())))
    assert sorted(r["provenance"]) == sorted(lo["provenance"])
    assert r["provenance"]["host"] == f"{sshd['user']}@127.0.0.1:{sshd['port']}"
    assert lo["provenance"]["host"] == "local"
    assert r["provenance"]["device"]["cpu"]["model"] == lo["provenance"]["device"]["cpu"]["model"]
    assert remote.measured == local.measured


def test_remote_measure_onnx_cleans_up(sshd, tmp_path):
    profile = tiny_profile(tmp_path / "profiles")
    path = StudentArtifact(TINY_TEACHER, 1, "onnxruntime", "fp32")(tmp_path / "s.onnx")
    before = set(Path("/tmp").glob("dass-edge.*"))
    got = measure_onnx(path, str(profile), sessions=2, iterations=3, target=_target(sshd))
    assert got["sessions"] == 2 and got["count"] == 3 * got["sessions_kept"] and got["p50_ms"] > 0
    assert set(Path("/tmp").glob("dass-edge.*")) == before  # the remote work folder is gone


def test_device_jetson_over_ssh_checks_the_remote_device(sshd):
    from dass_edge.latency import resolve_device

    with pytest.raises(DassEdgeError, match="127.0.0.1:.* is not a Jetson"):
        resolve_device("jetson", _target(sshd))


def test_unknown_host_key_is_refused(sshd, tmp_path):
    t = _target(sshd, known_hosts=str(sshd["dir"] / "empty_known_hosts"))
    with pytest.raises(DassEdgeError, match="host key of .* is not in .*ssh-keyscan"):
        profile_device(str(tiny_profile(tmp_path / "profiles")), TINY_TEACHER, target=t)
    assert not list((tmp_path / "tables").glob("*.json"))


def test_changed_host_key_is_refused(sshd, tmp_path):
    wrong = tmp_path / "known_hosts"
    other = (sshd["dir"] / "other_key.pub").read_text().split(" ")
    wrong.write_text(f"[127.0.0.1]:{sshd['port']} {other[0]} {other[1]}\n")
    with pytest.raises(DassEdgeError, match="CHANGED"):
        _target(sshd, known_hosts=str(wrong)).run(["true"])


def test_auth_failure_is_explained(sshd):
    with pytest.raises(DassEdgeError, match="authentication to .* failed"):
        _target(sshd, identity_file=str(sshd["dir"] / "other_key")).run(["true"])


def test_unreachable_host(sshd):
    with pytest.raises(DassEdgeError, match="refused the connection"):
        _target(sshd, port=_free_port()).run(["true"])


def test_missing_python_and_no_shell_injection(sshd, tmp_path):
    marker = tmp_path / "pwned"
    t = _target(sshd, python=f"python3; touch {marker}")
    with pytest.raises(DassEdgeError, match="was not found on the device"):
        t.check()
    assert not marker.exists()  # the whole string was one (missing) program name, never shell syntax


@pytest.mark.slow
@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed here")
def test_missing_backend_on_the_device(sshd, tmp_path):
    profile = tiny_profile(tmp_path / "profiles", name="trt", backend="tensorrt", precision="fp16")
    with pytest.raises(DassEdgeError, match="tensorrt is not importable"):
        profile_device(str(profile), TINY_TEACHER, target=_target(sshd), students=0)


@pytest.mark.slow
def test_cli_profile_over_ssh_and_unreachable(sshd, tmp_path, capsys):
    tiny_profile(tmp_path / "profiles")
    host = f"{sshd['user']}@127.0.0.1:{sshd['port']}"
    common = ["--ssh-key", str(sshd["dir"] / "client_key"), "--known-hosts", str(sshd["known_hosts"]),
              "--ssh-config", "none", "--remote-python", sys.executable]
    from dass_edge.models import build_model, save_checkpoint

    ckpt = save_checkpoint(tmp_path / "t.safetensors", build_model(TINY_TEACHER))
    code, out, err = run_cli(["profile", "--device", "tiny", "--host", host, *common, "--teacher", str(ckpt),
                              "--students", "4", "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["entries"] == 28
    code, out, err = run_cli(["profile", "--device", "tiny", "--host", f"{sshd['user']}@127.0.0.1:{_free_port()}",
                              *common], capsys)
    assert code == 2 and err.startswith("error: ") and "refused" in err and err.count("\n") == 1

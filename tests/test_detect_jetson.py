"""``--device jetson``: the profile is picked from the device tree and L4T release, read over SSH or here.

The SSH tests use the loopback sshd of ``test_remote_ssh`` (they skip where OpenSSH is not installed) with
fake device-tree and release files: the paths the detector reads are pointed at them.
"""

from __future__ import annotations

import dataclasses
import json
import sys

import pytest
from conftest import run_cli
from test_latency_profile import TINY_TEACHER, tiny_profile
from test_remote_ssh import _target, sshd  # noqa: F401 (sshd is a fixture)

from dass_edge.errors import DassEdgeError
from dass_edge.latency import detect, load_profile, resolve_device
from dass_edge.latency.detect import DeviceIdentity, match_jetson

ORIN_NANO = "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super"
R36 = "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: Wed Jan  8 01:49:37 2025"


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("DASS_EDGE_TABLES", str(tmp_path / "tables"))
    monkeypatch.setenv("DASS_EDGE_PROFILES", str(tmp_path / "profiles"))


def _fake_device(tmp_path, monkeypatch, model: str | None, release: str | None) -> None:
    tree, rel = tmp_path / "device-tree-model", tmp_path / "nv_tegra_release"
    if model is not None:
        tree.write_bytes(model.encode() + b"\x00")  # the device tree's string is NUL-terminated
    if release is not None:
        rel.write_text(release + "\n")
    monkeypatch.setattr(detect, "DEVICE_TREE_MODEL", str(tree))
    monkeypatch.setattr(detect, "TEGRA_RELEASE", str(rel))


def test_identity_parses_the_l4t_release():
    ident = DeviceIdentity(ORIN_NANO, R36)
    assert (ident.l4t, ident.jetpack) == ("R36.4.3", 6)
    assert DeviceIdentity("x", "# R35 (release), REVISION: 5.0, GCID: 1").jetpack == 5
    assert DeviceIdentity("x", None).l4t is None and DeviceIdentity("x", "garbage").jetpack is None


def test_longest_detect_then_the_device_jetpack_wins():
    nano6 = load_profile("jetson-orin-nano")
    nano5 = dataclasses.replace(nano6, name="nano-jp5", description="Orin Nano (JetPack 5)")
    any_orin = dataclasses.replace(nano6, name="any-orin", detect="Orin")
    profiles = [any_orin, nano5, nano6]
    assert match_jetson(DeviceIdentity(ORIN_NANO, R36), profiles, "d", True).name == "jetson-orin-nano"
    jp5 = "# R35 (release), REVISION: 5.0, GCID: 1"
    assert match_jetson(DeviceIdentity(ORIN_NANO, jp5), profiles, "d", True).name == "nano-jp5"
    assert match_jetson(DeviceIdentity("NVIDIA Jetson AGX Orin", R36), profiles, "d", True).name == "any-orin"


def test_locally_without_host_the_error_says_it_needs_the_device(monkeypatch, capsys):
    from dass_edge.latency import profiles

    monkeypatch.setattr(profiles, "jetson_model", lambda: None)
    monkeypatch.setattr(detect, "TEGRA_RELEASE", "/nonexistent/nv_tegra_release")
    with pytest.raises(DassEdgeError, match="this machine is not a Jetson.*needs the device.*--host user@jetson.*"
                                            "jetson-agx-orin, jetson-orin-nano, jetson-xavier-nx"):
        resolve_device("jetson")
    code, _, err = run_cli(["profile", "--device", "jetson"], capsys)
    assert code == 2 and err.startswith("error: --device jetson: this machine is not a Jetson")
    assert err.count("\n") == 1


@pytest.mark.parametrize("model,release,expected", [
    (ORIN_NANO, R36, "jetson-orin-nano"),
    ("NVIDIA Jetson AGX Orin Developer Kit", R36, "jetson-agx-orin"),
    ("NVIDIA Jetson Xavier NX Developer Kit", "# R35 (release), REVISION: 5.0, GCID: 1", "jetson-xavier-nx"),
])
def test_jetson_is_detected_over_ssh(sshd, tmp_path, monkeypatch, model, release, expected):  # noqa: F811
    _fake_device(tmp_path, monkeypatch, model, release)
    assert resolve_device("jetson", _target(sshd)).name == expected


def test_detection_errors_over_ssh(sshd, tmp_path, monkeypatch):  # noqa: F811
    _fake_device(tmp_path, monkeypatch, "Raspberry Pi 4 Model B Rev 1.4", None)
    with pytest.raises(DassEdgeError, match=r"127\.0\.0\.1:\d+ is not a Jetson \(device-tree model: Raspberry Pi 4.*"
                                            r"name a profile instead: jetson-agx-orin"):
        resolve_device("jetson", _target(sshd))
    _fake_device(tmp_path, monkeypatch, "NVIDIA Jetson TX2 Developer Kit", "# R32 (release), REVISION: 7.1, GCID: 1")
    with pytest.raises(DassEdgeError, match=r"no device profile matches 'NVIDIA Jetson TX2 Developer Kit' on .* "
                                            r"\(L4T R32\.7\.1\) \(Jetson profiles: jetson-agx-orin, jetson-orin-nano"):
        resolve_device("jetson", _target(sshd))


def test_cli_profile_device_jetson_picks_the_profile_over_ssh(sshd, tmp_path, monkeypatch, capsys):  # noqa: F811
    """End to end: the loopback 'Orin Nano' is profiled with the profile named jetson-orin-nano (a user copy
    that measures with onnxruntime, since the loopback has no TensorRT; same name overrides the shipped one)."""
    from dass_edge.latency import LatencyTable
    from dass_edge.models import build_model, save_checkpoint

    tiny_profile(tmp_path / "profiles", name="jetson-orin-nano", detect="Orin Nano")
    _fake_device(tmp_path, monkeypatch, ORIN_NANO, R36)
    ckpt = save_checkpoint(tmp_path / "t.safetensors", build_model(TINY_TEACHER))
    host = f"{sshd['user']}@127.0.0.1:{sshd['port']}"
    ssh = ["--host", host, "--ssh-key", str(sshd["dir"] / "client_key"), "--known-hosts", str(sshd["known_hosts"]),
           "--ssh-config", "none", "--remote-python", sys.executable]
    code, out, err = run_cli(["profile", "--device", "jetson", *ssh, "--teacher", str(ckpt), "--students", "0",
                              "--json"], capsys)
    assert code == 0, err
    table = LatencyTable.load(json.loads(out)["path"])
    assert table.device == "jetson-orin-nano" and table.provenance["host"] == host
    _fake_device(tmp_path, monkeypatch, "NVIDIA Jetson TX2", None)
    code, _, err = run_cli(["profile", "--device", "jetson", *ssh, "--teacher", str(ckpt)], capsys)
    assert code == 2 and err.startswith("error: no device profile matches 'NVIDIA Jetson TX2'") and err.count("\n") == 1

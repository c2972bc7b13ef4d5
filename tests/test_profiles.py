"""Device profiles: the shipped ones are valid, and every schema violation is a one-line error."""

from __future__ import annotations

import pytest
import yaml

from dass_edge.errors import DassEdgeError
from dass_edge.latency import list_profiles, load_profile
from dass_edge.latency.profiles import profile_from_dict
from dass_edge.resources import profiles_dir

REQUIRED = {"cpu", "gpu", "jetson-orin-nano", "jetson-agx-orin", "jetson-xavier-nx"}
GOOD = {"name": "x", "description": "d", "backend": "onnxruntime", "precision": "fp32", "batch": 1, "threads": 1,
        "resolutions": [32], "measurement": {"warmup_s": 0.01, "iterations": 5, "sessions": 2}}


@pytest.fixture(autouse=True)
def _no_user_profiles(tmp_path, monkeypatch):
    monkeypatch.setenv("DASS_EDGE_PROFILES", str(tmp_path / "profiles"))


def test_required_profiles_ship_and_load():
    profiles = {p.name: p for p in list_profiles()}
    assert REQUIRED <= set(profiles)
    cpu = profiles["cpu"]
    assert (cpu.backend, cpu.precision, cpu.batch, cpu.threads) == ("onnxruntime", "fp32", 1, 1)
    assert cpu.providers == ("CPUExecutionProvider",) and 32 in cpu.resolutions
    for name in ("jetson-orin-nano", "jetson-agx-orin", "jetson-xavier-nx"):
        p = profiles[name]
        assert p.backend == "tensorrt" and p.clocks["nvpmodel"] == "required" and "jetson_clocks" in p.clocks
        assert p.detect
    assert profiles["gpu"].providers == ("CUDAExecutionProvider",)


def test_every_shipped_file_is_named_after_its_profile():
    for path in profiles_dir().glob("*.yaml"):
        assert yaml.safe_load(path.read_text())["name"] == path.stem
        assert load_profile(path.stem).source == str(path)


def test_backend_settings_carry_what_runners_need():
    s = load_profile("cpu").backend_settings()
    assert {"backend", "threads", "batch", "providers", "warmup_s", "iterations", "precision", "nice"} <= set(s)


@pytest.mark.parametrize("change,match", [
    ({"backend": "tvm"}, "backend"),
    ({"precision": "int4"}, "precision"),
    ({"batch": 0}, "batch"),
    ({"threads": "one"}, "threads must be int"),
    ({"batch": True}, "batch must be int"),
    ({"resolutions": []}, "resolutions"),
    ({"resolutions": [4]}, "resolutions"),
    ({"measurement": {"iterations": 0}}, "iterations"),
    ({"measurement": {"repeats": 3}}, "measurement"),
    ({"measurement": {"nice": -40}}, "nice"),
    ({"measurement": {"pin_core": "yes"}}, "pin_core must be bool"),
    ({"clocks": {"nvpmodel": "maybe"}}, "clocks"),
    ({"clocks": {"fan": "required"}}, "clocks"),
    ({"providers": ["CPUExecutionProvider"], "backend": "torch"}, "providers"),
    ({"backend": "torch", "precision": "int8"}, "torch"),
    ({"device": "tpu"}, "device"),
    ({"colour": "red"}, "unknown keys"),
])
def test_schema_violations_are_one_line_errors(change, match):
    with pytest.raises(DassEdgeError, match=match) as e:
        profile_from_dict({**GOOD, **change}, "test.yaml")
    assert "\n" not in str(e.value) and "test.yaml" in str(e.value)


@pytest.mark.parametrize("missing", ["backend", "measurement", "resolutions"])
def test_missing_keys_are_reported(missing):
    with pytest.raises(DassEdgeError, match=f"missing key '{missing}'"):
        profile_from_dict({k: v for k, v in GOOD.items() if k != missing}, "test.yaml")


def test_unknown_device_lists_known_ones():
    with pytest.raises(DassEdgeError, match="unknown device 'tpu-v9'.*cpu.*jetson-orin-nano"):
        load_profile("tpu-v9")


def test_profile_files_and_user_profiles(tmp_path, monkeypatch):
    f = tmp_path / "mine.yaml"
    f.write_text(yaml.safe_dump({**GOOD, "name": "mine"}))
    assert load_profile(str(f)).name == "mine"
    with pytest.raises(DassEdgeError, match="does not exist"):
        load_profile(str(tmp_path / "nope.yaml"))
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    with pytest.raises(DassEdgeError, match="not valid YAML"):
        load_profile(str(broken))
    user = tmp_path / "profiles"
    user.mkdir()
    (user / "cpu.yaml").write_text(yaml.safe_dump({**GOOD, "name": "cpu", "threads": 2}))
    (user / "odd.yaml").write_text(yaml.safe_dump({**GOOD, "name": "other"}))
    assert load_profile("cpu").threads == 2  # the user's profile overrides the shipped one
    with pytest.raises(DassEdgeError, match="names itself 'other'"):
        load_profile("odd")


def test_check_resolution():
    cpu = load_profile("cpu")
    assert cpu.check_resolution(32) == 32
    with pytest.raises(DassEdgeError, match="resolutions"):
        cpu.check_resolution(33)


@pytest.mark.parametrize("model,expected", [
    ("NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super", "jetson-orin-nano"),
    ("NVIDIA Jetson AGX Orin Developer Kit", "jetson-agx-orin"),
    ("NVIDIA Jetson Xavier NX Developer Kit", "jetson-xavier-nx"),
])
def test_device_jetson_is_detected(model, expected, monkeypatch):
    from dass_edge.latency import profiles

    monkeypatch.setattr(profiles, "jetson_model", lambda: model)
    assert profiles.resolve_device("jetson").name == expected
    assert profiles.resolve_device("cpu").name == "cpu"  # other names are plain lookups


def test_device_jetson_errors(monkeypatch):
    from dass_edge.latency import profiles

    monkeypatch.setattr(profiles, "jetson_model", lambda: None)
    with pytest.raises(DassEdgeError, match="this machine is not a Jetson"):
        profiles.resolve_device("jetson")
    monkeypatch.setattr(profiles, "jetson_model", lambda: "NVIDIA Jetson TX2")
    with pytest.raises(DassEdgeError, match="no device profile matches 'NVIDIA Jetson TX2'"):
        profiles.resolve_device("jetson")

"""A regular (non-editable) wheel install finds its packaged data: exporters, profiles, tables, demo teacher."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    # Build from a clean copy: setuptools reuses a stale in-tree build/ folder, which would hide a
    # missing or renamed file.
    src = tmp / "src"
    def ignore(folder: str, names: list[str]) -> set[str]:
        skip = {"__pycache__"} | {n for n in names if n.endswith(".egg-info")}
        if Path(folder) == ROOT:  # top-level work folders only (dass_edge/metadb is a package)
            skip |= {"build", "dist", ".git", ".venv", ".pytest_cache", ".ruff_cache", "runs", "metadb"}
        return skip & set(names)

    shutil.copytree(ROOT, src, ignore=ignore)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp / "dist"), str(src)],
                   check=True, capture_output=True)
    wheels = list((tmp / "dist").glob("dass_edge-*.whl"))
    assert len(wheels) == 1
    env_dir = tmp / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    # Dependencies (torch, onnx, ...) come from this interpreter's site-packages via a plain path entry;
    # the package itself only from the wheel (plain .pth paths do not run the editable-install hooks).
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "host_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheels[0])], check=True,
                   capture_output=True)
    return env_dir


def _run(env_dir: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([str(env_dir / "bin" / args[0]), *args[1:]], capture_output=True, text=True, env=env,
                            cwd=str(env_dir))
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.slow
def test_wheel_install_runs_cli_and_finds_packaged_data(wheel_venv):
    assert _run(wheel_venv, "dass-edge", "--version").startswith("dass-edge ")
    assert len(json.loads(_run(wheel_venv, "dass-edge", "data", "list", "--json"))) >= 12
    info = json.loads(_run(wheel_venv, "dass-edge", "teacher", "info", "--json"))
    assert info["num_classes"] == 26 and info["test_acc"] > 50
    probe = (
        "import json, dass_edge, dass_edge.exporters\n"
        "from dass_edge.resources import profiles_dir, tables_dir, asset_path\n"
        "print(json.dumps({'pkg': dass_edge.__file__, 'exporters': dass_edge.exporters.__file__,\n"
        "  'profiles': sorted(p.name for p in profiles_dir().glob('*.yaml')),\n"
        "  'tables': sorted(p.name for p in tables_dir().glob('*.json')),\n"
        "  'teacher': asset_path('demo_teacher.safetensors').is_file(),\n"
        "  'predictor': asset_path('predictor.safetensors').is_file(), 'db': asset_path('metadb.jsonl').is_file()}))\n"
    )
    found = json.loads(_run(wheel_venv, "python", "-c", probe))
    for key in ("pkg", "exporters"):
        assert found[key].startswith(str(wheel_venv)), found  # installed copy, not the source tree
    assert found["teacher"] and found["predictor"] and found["db"]  # search and meta info work from a wheel
    assert sorted(p.name for p in (ROOT / "profiles").glob("*.yaml")) == found["profiles"]
    assert sorted(p.name for p in (ROOT / "latency_tables").glob("*.json")) == found["tables"]


def test_pyproject_lists_every_package():
    """The package list is explicit (three packages are mapped from top-level folders); none may be forgotten."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapped = config.get("package-dir", {})
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "dass_edge").rglob("__init__.py")}
    found |= {pkg + "." + ".".join(p.parent.relative_to(ROOT / folder).parts) if p.parent != ROOT / folder else pkg
              for pkg, folder in mapped.items() for p in (ROOT / folder).rglob("__init__.py")}
    assert found == set(config["packages"])

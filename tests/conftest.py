"""Shared fixtures: isolated user folders, a small teacher, the CLI runner.

Tests never read or write the user's own folders (latency tables, device profiles, caches), whatever
ran before them: every one is pointed at a folder of this session here, at import time, before any
fixture runs or any test module is collected (``skipif`` conditions and module-scoped fixtures
included). ``tests/test_isolation.py`` proves it against a populated user table store.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import pytest
import torch

_SESSION_DIR = tempfile.mkdtemp(prefix="dass-edge-tests-")
atexit.register(shutil.rmtree, _SESSION_DIR, ignore_errors=True)
# Always overridden (not setdefault): a user's own DASS_EDGE_TABLES/PROFILES must not leak in either.
os.environ["DASS_EDGE_TABLES"] = os.path.join(_SESSION_DIR, "latency_tables")
os.environ["DASS_EDGE_PROFILES"] = os.path.join(_SESSION_DIR, "profiles")
# Built-in tasks are generated deterministically; share one cache across test sessions (fast reruns),
# kept in the checkout, never the user's cache dir.
os.environ["DASS_EDGE_CACHE"] = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".pytest_cache",
                                             "dass-edge")
# platformdirs' fallbacks (anything that ignores the variables above lands here, not in $HOME)
for _var in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
    os.environ[_var] = os.path.join(_SESSION_DIR, _var.lower())


def perturbed_teacher(num_classes: int = 10, resolution: int = 32, model_name: str = "resnet_edge_s", seed: int = 0):
    """An untrained teacher (the demo shape by default) whose BN statistics are perturbed, so that
    remapped students compute non-trivial functions."""
    from dass_edge.models import create_model

    torch.manual_seed(seed)
    model = create_model(model_name, num_classes=num_classes, resolution=resolution)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.normal_(1, 0.1)
                m.bias.normal_(0, 0.1)
    return model.eval()


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run fastest on one thread, and two OpenMP threads spin-wait (several times slower)
    whenever another job holds a core of this shared 2-core machine; results do not depend on it.
    Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def small_teacher():
    return perturbed_teacher()


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    """Run the CLI entry point in-process; returns (exit code, stdout, stderr)."""
    from dass_edge.cli import main

    with pytest.raises(SystemExit) as exc:
        main(args)
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out, out.err

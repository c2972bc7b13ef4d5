"""Shared fixtures: an isolated task cache and a small teacher."""

from __future__ import annotations

import os

import pytest
import torch

# Tasks are generated deterministically; share one cache across the test session (fast reruns),
# separate from the user's own cache.
os.environ.setdefault("DASS_EDGE_CACHE", os.path.join(os.path.dirname(__file__), "..", ".pytest_cache", "dass-edge"))


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

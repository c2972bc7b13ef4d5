"""The teachers users bring: a torchvision-layout ResNet-18 ``.pth`` (ImageNet stem, no spec inside) on an
image folder, profiled and searched at the 64 px the user deploys, end to end and offline.

A predictor meta-trained on small-stem 16 px teachers only must say that its accuracy estimates here are an
extrapolation; the shipped one says so exactly when its coverage lacks this stem or resolution. The profile is
the ``cpu`` profile with fewer timed runs, so the test takes about a minute rather than several.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from conftest import run_cli
from PIL import Image

pytestmark = pytest.mark.slow


@pytest.fixture
def work(tmp_path, monkeypatch):
    monkeypatch.setenv("DASS_EDGE_TABLES", str(tmp_path / "user-tables"))
    monkeypatch.chdir(tmp_path)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tmp_path
    torch.set_num_threads(before)


def _image_folder(root, classes=3, per_class=14, side=80):
    """Classes differ by the colour and position of a square on a noisy background."""
    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(per_class):
            img = rng.integers(0, 60, (side, side, 3)).astype(np.uint8)
            x, y = 10 + 20 * c, int(rng.integers(5, 40))
            img[y:y + 25, x:x + 25, c] = 230
            Image.fromarray(img).save(root / f"class{c}" / f"{i}.png")
    return root


def _resnet18_pth(path, num_classes=3):
    """A torchvision-layout ResNet-18 state dict (parameter names, ImageNet stem and widths of torchvision's
    ``resnet18``), saved the way torchvision users save one.

    Full widths on purpose: at a quarter of them the teacher ran 0.34 ms at 64 px, within timing noise of the
    fastest student (0.31 ms), and a 90% budget then had no student on a loaded 2-core CI machine."""
    from dass_edge.models.resnet import build_model
    from dass_edge.spec import ModelSpec

    spec = ModelSpec.uniform((64, 128, 256, 512), (2, 2, 2, 2), stem="imagenet", num_classes=num_classes,
                             resolution=224)
    torch.manual_seed(0)
    state = build_model(spec).state_dict()
    assert "layer4.1.bn2.running_var" in state and "fc.weight" in state and state["conv1.weight"].shape[-1] == 7
    torch.save(state, path)
    return path


def _quick_profile(path):
    from importlib import resources

    data = yaml.safe_load(resources.files("dass_edge.profiles").joinpath("cpu.yaml").read_text())
    data.update(name="cpu-quick-test", description="cpu with fewer timed runs (tests)")
    data["measurement"].update(iterations=5, sessions=2, fidelity_students=8, fidelity_sessions=3)
    path.write_text(yaml.safe_dump(data))
    return path


def test_torchvision_resnet18_pth_searched_at_64px_says_it_extrapolates(work, capsys):
    data = _image_folder(work / "images")
    teacher = _resnet18_pth(work / "resnet18.pth")
    profile = _quick_profile(work / "quick.yaml")
    code, out, err = run_cli(["profile", "--device", str(profile), "--teacher", str(teacher), "--resolution", "64",
                              "--json"], capsys)
    assert code == 0, err
    table = json.loads(out)
    assert "64" in json.dumps(table)
    code, out, err = run_cli(["search", "--device", str(profile), "--teacher", str(teacher), "--data", str(data),
                              "--resolution", "64", "--latency-ms", "90%", "--budget-evals", "200", "--top-k", "2",
                              "--out", "run", "--json", "--refine", "0"], capsys)
    assert code == 0, err
    record = json.loads(out)
    assert record["resolution"] == 64 and record["inputs"]["resolution"] == 64
    assert record["top"] and all(p["latency_ms"] <= record["budget"]["ms"] + 1e-9 for p in record["top"])
    from dass_edge.predictor.coverage import extrapolation_notes, predictor_coverage

    expected = extrapolation_notes(predictor_coverage(), record_spec := _spec_of(teacher))
    assert [n for n in record["notes"] if "extrapolation" in n] == expected
    saved = json.loads((work / "run" / "search.json").read_text())
    assert saved["notes"] == record["notes"]

    small_only = _small_stem_predictor(work / "small-stem.safetensors")
    code, out, err = run_cli(["search", "--device", str(profile), "--teacher", str(teacher), "--data", str(data),
                              "--resolution", "64", "--latency-ms", "90%", "--budget-evals", "100", "--top-k", "1",
                              "--predictor", str(small_only), "--out", "run2", "--json", "--refine", "0"],
                             capsys)
    assert code == 0, err
    extrapolations = [n for n in json.loads(out)["notes"] if "extrapolation" in n]
    assert any("imagenet stem" in n for n in extrapolations) and any("64 px" in n for n in extrapolations)
    assert record_spec.stem == "imagenet"


def _spec_of(pth):
    """The spec search reads from ``pth`` at 64 px (what coverage compares: stem, resolution, depths)."""
    from dataclasses import replace

    from dass_edge.models.checkpoint import load_checkpoint

    return replace(load_checkpoint(pth)[0].spec, resolution=64)


def _small_stem_predictor(path):
    """A predictor file whose meta-training covered small-stem 16 px teachers only."""
    from dass_edge.predictor.hybrid import HybridPredictor
    from dass_edge.predictor.store import save_predictor
    from tests.test_predictor_task_probe import _task

    model = HybridPredictor(residual_steps=0, probe=True).fit([_task(f"t{i}", i, e) for i, e in enumerate((0.5, 0.9))])
    coverage = {"stems": ["small"], "resolutions": [16], "max_depth": 3, "teachers": [], "rows": 120}
    return save_predictor(path, [model], {"train": {"model": "hybrid"}, "coverage": coverage})


def test_search_resolution_is_checked_before_any_work(work, capsys):
    teacher = _resnet18_pth(work / "resnet18.pth")
    code, out, err = run_cli(["search", "--teacher", str(teacher), "--data", str(_image_folder(work / "im")),
                              "--resolution", "0", "--latency-ms", "50%", "--out", "run"], capsys)
    assert code == 2 and err.startswith("error:") and err.count("\n") == 1 and "resolution" in err
    assert not (work / "run").exists() and not (work / "user-tables").exists()

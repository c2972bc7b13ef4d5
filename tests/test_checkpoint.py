import pytest
import torch

from dass_edge.errors import DassEdgeError
from dass_edge.models import load_checkpoint, save_checkpoint


def _torchvision_resnet_keys(layers: tuple[int, ...], num_classes: int = 1000) -> dict[str, tuple[int, ...]]:
    """The parameter and buffer names/shapes of torchvision's ResNet-18/34, written out independently."""
    keys: dict[str, tuple[int, ...]] = {}

    def bn(prefix: str, c: int) -> None:
        for n in ("weight", "bias", "running_mean", "running_var"):
            keys[f"{prefix}.{n}"] = (c,)
        keys[f"{prefix}.num_batches_tracked"] = ()

    keys["conv1.weight"] = (64, 3, 7, 7)
    bn("bn1", 64)
    inplanes = 64
    for s, (planes, n) in enumerate(zip((64, 128, 256, 512), layers), start=1):
        for b in range(n):
            stride = 2 if (s > 1 and b == 0) else 1
            p = f"layer{s}.{b}"
            keys[f"{p}.conv1.weight"] = (planes, inplanes, 3, 3)
            bn(f"{p}.bn1", planes)
            keys[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
            bn(f"{p}.bn2", planes)
            if stride != 1 or inplanes != planes:
                keys[f"{p}.downsample.0.weight"] = (planes, inplanes, 1, 1)
                bn(f"{p}.downsample.1", planes)
            inplanes = planes
    keys["fc.weight"] = (num_classes, 512)
    keys["fc.bias"] = (num_classes,)
    return keys


@pytest.mark.parametrize("layers", [(2, 2, 2, 2), (3, 4, 6, 3)])
def test_torchvision_state_dict_loads_as_teacher(tmp_path, layers):
    keys = _torchvision_resnet_keys(layers)
    g = torch.Generator().manual_seed(0)
    state = {k: (torch.randn(shape, generator=g) if shape else torch.tensor(0)) for k, shape in keys.items()}
    for k in state:
        if k.endswith("running_var"):
            state[k] = state[k].abs() + 0.5
    path = tmp_path / "resnet.pth"
    torch.save(state, path)
    model, meta = load_checkpoint(path)
    assert meta["source"] == "state_dict"
    assert model.spec.depths == layers
    assert model.spec.stem == "imagenet" and model.spec.num_classes == 1000
    assert set(model.state_dict()) == set(keys)
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k])
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1000)


def test_safetensors_roundtrip_keeps_spec_meta_and_outputs(tmp_path, small_teacher):
    path = save_checkpoint(tmp_path / "t.safetensors", small_teacher, {"val_acc": 12.5, "task": "shapes"})
    model, meta = load_checkpoint(path)
    assert model.spec == small_teacher.spec
    assert meta == {"val_acc": 12.5, "task": "shapes"}
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(model(x), small_teacher(x))
    assert not list(tmp_path.glob(".*tmp"))


def test_wrapped_pth_with_module_prefix_loads(tmp_path, small_teacher):
    path = tmp_path / "w.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in small_teacher.state_dict().items()}}, path)
    model, _ = load_checkpoint(path, resolution=32)
    assert model.spec.stages == small_teacher.spec.stages and model.spec.stem == "small"


@pytest.mark.parametrize(
    "content, suffix, message",
    [
        (b"not a checkpoint", ".safetensors", "not a readable safetensors file"),
        (b"not a checkpoint", ".pth", "not a loadable weights-only state dict"),
        (b"", ".onnx", "unknown checkpoint type"),
    ],
)
def test_corrupt_files_give_clear_errors(tmp_path, content, suffix, message):
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(content)
    with pytest.raises(DassEdgeError, match=message):
        load_checkpoint(path)


def test_safetensors_without_spec_rejected(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(DassEdgeError, match="no dass-edge model spec"):
        load_checkpoint(path)


class Payload:
    """An arbitrary class: weights-only loading must refuse to unpickle it."""


def test_pickled_object_refused_by_weights_only(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"x": Payload()}, path)
    with pytest.raises(DassEdgeError, match="weights-only"):
        load_checkpoint(path)


def test_bottleneck_state_dict_rejected(tmp_path, small_teacher):
    state = dict(small_teacher.state_dict())
    state["layer1.0.conv3.weight"] = torch.zeros(4, 4, 1, 1)
    path = tmp_path / "r50.pth"
    torch.save(state, path)
    with pytest.raises(DassEdgeError, match="Bottleneck"):
        load_checkpoint(path)


def test_missing_file(tmp_path):
    with pytest.raises(DassEdgeError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.safetensors")

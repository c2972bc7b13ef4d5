"""The BasicBlock ResNet family, its named configurations and the one factory that builds them.

Ordered like timm's ``resnet.py``: the model class, then private helpers, then small registered
entry points that only state shapes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from dass_edge.errors import DassEdgeError
from dass_edge.models.layers import BasicBlock, make_stem
from dass_edge.spec import ModelSpec, block_layout

__all__ = ["ResNet", "build_model", "create_model", "is_model", "list_models", "register_model"]


class ResNet(nn.Module):
    """A 4-stage BasicBlock ResNet built from a :class:`ModelSpec`.

    Parameter names follow torchvision (``conv1``, ``bn1``, ``layer1.0.conv1``, ..., ``fc``) so a
    torchvision ResNet-18/34 state dict loads without torchvision.
    """

    def __init__(self, spec: ModelSpec, init_weights: bool = True) -> None:
        super().__init__()
        self.spec = spec
        for name, module in make_stem(spec.stem, spec.in_chans, spec.stem_width).items():
            setattr(self, name, module)
        layout = iter(block_layout(spec))
        for s, blocks in enumerate(spec.stages):
            stage = []
            for _ in blocks:
                cin, cout, stride, _res, _proj = next(layout)
                stage.append(BasicBlock(cin, cout, stride))
            setattr(self, f"layer{s + 1}", nn.Sequential(*stage))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(spec.feature_width, spec.num_classes)
        if init_weights:  # skipped when every tensor is overwritten anyway (remapping, loading)
            self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Stage-4 activation maps (the DaSS functional embedding)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(x), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def build_model(spec: ModelSpec, init_weights: bool = True) -> ResNet:
    """Build a model from a spec (randomly initialized unless ``init_weights=False``)."""
    return ResNet(spec, init_weights)


# --- registry (timm-style) ----------------------------------------------------------------------
_MODELS: dict[str, Callable[..., ModelSpec]] = {}


def register_model(fn: Callable[..., ModelSpec]) -> Callable[..., ModelSpec]:
    """Register a function returning a :class:`ModelSpec` under its own name."""
    if fn.__name__ in _MODELS:
        raise ValueError(f"model {fn.__name__!r} registered twice")
    _MODELS[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    return sorted(_MODELS)


def is_model(name: str) -> bool:
    return name in _MODELS


def model_spec(name: str, **kwargs) -> ModelSpec:
    """The spec of a registered configuration; ``None`` kwargs fall back to its defaults."""
    if name not in _MODELS:
        raise DassEdgeError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    return _MODELS[name](**{k: v for k, v in kwargs.items() if v is not None})


def create_model(name: str, **kwargs) -> ResNet:
    """Build a registered configuration, e.g. ``create_model("resnet18", num_classes=10)``."""
    return build_model(model_spec(name, **kwargs))


@register_model
def resnet18(**kwargs) -> ModelSpec:
    """torchvision ResNet-18 shape (ImageNet stem unless ``stem='small'``)."""
    return ModelSpec.uniform((64, 128, 256, 512), (2, 2, 2, 2), **{"stem": "imagenet", "num_classes": 1000,
                                                                   "resolution": 224, **kwargs})


@register_model
def resnet34(**kwargs) -> ModelSpec:
    """torchvision ResNet-34 shape."""
    return ModelSpec.uniform((64, 128, 256, 512), (3, 4, 6, 3), **{"stem": "imagenet", "num_classes": 1000,
                                                                   "resolution": 224, **kwargs})


@register_model
def resnet_edge_s(**kwargs) -> ModelSpec:
    """Small-image teacher (16-32-64-128, depth 2 each): the demo teacher's shape; ~0.7M params."""
    return ModelSpec.uniform((16, 32, 64, 128), (2, 2, 2, 2), **kwargs)


@register_model
def resnet_edge_m(**kwargs) -> ModelSpec:
    """Wider, deeper small-image teacher (24-48-96-192, depths 2-3-3-2); a second teacher shape."""
    return ModelSpec.uniform((24, 48, 96, 192), (2, 3, 3, 2), **kwargs)


@register_model
def resnet_edge_d3(**kwargs) -> ModelSpec:
    """Deeper small-image teacher (16-32-64-128, depth 3 each): real depth-vs-width trade-offs for students."""
    return ModelSpec.uniform((16, 32, 64, 128), (3, 3, 3, 3), **kwargs)


@register_model
def resnet34_edge(**kwargs) -> ModelSpec:
    """ResNet-34's depths (3-4-6-3) at a quarter of its width, small stem: a ResNet-34-like space at 16-32 px."""
    return ModelSpec.uniform((16, 32, 64, 128), (3, 4, 6, 3), **kwargs)


@register_model
def resnet18_in64(**kwargs) -> ModelSpec:
    """ResNet-18's shape and ImageNet stem at a quarter width for 64 px inputs (stages see 16-2 px maps)."""
    return ModelSpec.uniform((16, 32, 64, 128), (2, 2, 2, 2), **{"stem": "imagenet", "resolution": 64, **kwargs})


@register_model
def resnet34_in64(**kwargs) -> ModelSpec:
    """ResNet-34's shape and ImageNet stem at a quarter width for 64 px inputs."""
    return ModelSpec.uniform((16, 32, 64, 128), (3, 4, 6, 3), **{"stem": "imagenet", "resolution": 64, **kwargs})

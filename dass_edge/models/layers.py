"""Building blocks of the ResNet family (torchvision-compatible parameter names)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["BasicBlock", "make_stem"]


class BasicBlock(nn.Module):
    """Two 3x3 convs with BN; a 1x1 conv + BN shortcut (``downsample``) when stride or width changes."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


def make_stem(kind: str, in_chans: int, width: int) -> dict[str, nn.Module]:
    """Stem modules by torchvision name: ``conv1``, ``bn1``, ``relu`` and (ImageNet stem) ``maxpool``."""
    if kind == "small":
        return {"conv1": nn.Conv2d(in_chans, width, 3, 1, 1, bias=False), "bn1": nn.BatchNorm2d(width),
                "relu": nn.ReLU(inplace=True), "maxpool": nn.Identity()}
    return {"conv1": nn.Conv2d(in_chans, width, 7, 2, 3, bias=False), "bn1": nn.BatchNorm2d(width),
            "relu": nn.ReLU(inplace=True), "maxpool": nn.MaxPool2d(3, 2, 1)}

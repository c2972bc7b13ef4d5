"""`TaskData`: a labeled image task held in memory as uint8 tensors, with batching and augmentation.

Tasks here are small (built-in tasks are a few thousand 32x32 images), so keeping them in memory
and augmenting on tensors is much faster on a 2-core CPU than a PIL/DataLoader pipeline.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

__all__ = ["Split", "TaskData", "iterate_batches", "augment_batch"]


@dataclass
class Split:
    """Images as uint8 ``(N, C, H, W)`` and labels as int64 ``(N,)``."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass
class TaskData:
    """A classification task: class names and train/val/test splits at one resolution."""

    name: str
    class_names: tuple[str, ...]
    resolution: int
    train: Split
    val: Split
    test: Split
    flip_ok: bool = False  # horizontal flips keep the label (textures yes, glyphs no)
    source: str = "builtin"
    _stats: tuple[tuple[float, ...], tuple[float, ...]] | None = field(default=None, repr=False)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def split(self, name: str) -> Split:
        return {"train": self.train, "val": self.val, "test": self.test}[name]

    @property
    def mean_std(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and std of the training images on [0, 1] (the model's normalization)."""
        if self._stats is None:
            x = self.train.images.float() / 255.0
            mean = x.mean(dim=(0, 2, 3))
            std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
            self._stats = (tuple(round(float(v), 4) for v in mean), tuple(round(float(v), 4) for v in std))
        return self._stats


def normalize(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 ``(N, C, H, W)`` → float, normalized as the model expects."""
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    return (images.float() / 255.0 - m) / s


def augment_batch(images: torch.Tensor, generator: torch.Generator, pad: int, flip: bool) -> torch.Tensor:
    """Random crop after zero padding by ``pad`` pixels, and random horizontal flips if ``flip``."""
    n, _, h, w = images.shape
    if pad > 0:
        padded = F.pad(images, (pad, pad, pad, pad))
        dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
        dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
        rows = (dy[:, None] + torch.arange(h)[None, :])[:, None, :, None].expand(n, images.shape[1], h, w + 2 * pad)
        images = padded.gather(2, rows)
        cols = (dx[:, None] + torch.arange(w)[None, :])[:, None, None, :].expand(n, images.shape[1], h, w)
        images = images.gather(3, cols)
    if flip:
        mask = torch.rand(n, generator=generator) < 0.5
        images = torch.where(mask[:, None, None, None], images.flip(3), images)
    return images


def iterate_batches(
    split: Split,
    batch_size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    *,
    generator: torch.Generator | None = None,
    augment: bool = False,
    flip: bool = False,
    drop_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Yield ``(x, y, index)`` batches; shuffled and augmented when a ``generator`` is given.

    ``index`` are the sample positions in the split, so callers can cache per-sample values.
    """
    n = len(split)
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    stop = n - (n % batch_size) if drop_last else n
    for start in range(0, stop, batch_size):
        idx = order[start : start + batch_size]
        imgs = split.images[idx]
        if augment and generator is not None:
            imgs = augment_batch(imgs, generator, pad=max(1, split.images.shape[-1] // 8), flip=flip)
        yield normalize(imgs, mean, std), split.labels[idx], idx

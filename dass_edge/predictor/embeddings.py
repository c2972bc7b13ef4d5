"""Functional embeddings: what a network computes on one fixed probe batch of the task's images.

DaSS embeds a student by its stage-4 activation maps on a fixed input, so the predictor sees the
function the remapped student starts from (and the teacher's), not only its shape. Teachers of
this family differ in width and resolution, so maps are brought to a fixed size: spatially by
adaptive average pooling to ``grid x grid``, and in channels by a fixed random projection to
``channels`` dims. The projection depends only on the input width (seeded by it), so a student
and its teacher with the same last-stage width land in the same space.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from dass_edge.data.task import Split, normalize
from dass_edge.models.resnet import ResNet

__all__ = ["EMBED_CHANNELS", "EMBED_GRID", "PROBE_SIZE", "channel_projection", "embed", "embed_aligned", "embed_many",
           "probe_batch"]

EMBED_CHANNELS = 32
EMBED_GRID = 4
#: Probe images. 8 rather than 16: embedding cost is linear in it and search scores thousands of students
#: (measured at 32 px, 1 thread: 8 images ~1.5x the candidates/s of 16).
PROBE_SIZE = 8


def probe_batch(split: Split, mean: tuple[float, ...], std: tuple[float, ...], size: int = PROBE_SIZE,
                seed: int = 0) -> torch.Tensor:
    """The fixed probe input: ``size`` images of the split, picked by ``seed``, normalized."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(split), generator=g)[:size]
    return normalize(split.images[idx], mean, std)


@functools.lru_cache(maxsize=32)
def channel_projection(width: int, channels: int) -> torch.Tensor:
    """The fixed random ``(channels, width)`` map of :func:`project`, seeded by ``width`` (shared with the fast
    embedder, whose embeddings must equal these)."""
    g = torch.Generator().manual_seed(1000 + width)
    return torch.randn(channels, width, generator=g) / width**0.5


def project(features: torch.Tensor, channels: int = EMBED_CHANNELS, grid: int = EMBED_GRID) -> torch.Tensor:
    """``(B, C, h, w)`` stage-4 maps → ``(B, channels, grid, grid)``."""
    pooled = F.adaptive_avg_pool2d(features, grid)
    return torch.einsum("kc,bchw->bkhw", channel_projection(features.shape[1], channels), pooled)


@torch.no_grad()
def embed(model: ResNet, probe: torch.Tensor) -> torch.Tensor:
    """The functional embedding of one network (eval mode), ``(B, channels, grid, grid)``."""
    was_training = model.training
    model.eval()
    out = project(model.forward_features(probe))
    model.train(was_training)
    return out


@torch.no_grad()
def embed_aligned(model: ResNet, probe: torch.Tensor, teacher_width: int, channels: int = EMBED_CHANNELS,
                  grid: int = EMBED_GRID) -> torch.Tensor:
    """The functional embedding in the teacher's channel basis, ``(B, channels, g, g)`` with ``g <= grid``.

    A student remapped "first" from the teacher starts from the teacher's first ``C_s`` stage-4 channels,
    so its maps are zero-padded to the teacher's width and projected with the *teacher's* projection (the
    same basis for every student of that teacher and for the teacher itself), where :func:`embed` projects
    each width in its own unrelated basis. Maps are pooled down to at most ``grid x grid``, never upsampled.
    """
    was_training = model.training
    model.eval()
    feats = model.forward_features(probe)
    model.train(was_training)
    c = feats.shape[1]
    if c > teacher_width:
        raise ValueError(f"a student with {c} stage-4 channels does not fit a teacher {teacher_width} wide")
    h, w = feats.shape[-2:]
    pooled = F.adaptive_avg_pool2d(feats, (min(grid, h), min(grid, w)))
    # Zero-padding to the teacher's width and projecting = projecting with the first c columns.
    return torch.einsum("kc,bchw->bkhw", channel_projection(teacher_width, channels)[:, :c], pooled)


def embed_many(models: list[ResNet], probe: torch.Tensor) -> torch.Tensor:
    """Embeddings of many networks, stacked ``(N, B, channels, grid, grid)``."""
    return torch.stack([embed(m, probe) for m in models])

"""Shared rendering helpers for built-in tasks: colors, backgrounds, affine jitter, noise.

Built-in samples are drawn on a 2x canvas and downsampled, which gives anti-aliased strokes at
16-32 px. Every random choice comes from one ``numpy.random.Generator`` per split, so a task is
the same on every machine.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

__all__ = ["contrasting_colors", "background", "affine_jitter", "finish"]


def contrasting_colors(rng: np.random.Generator, min_gap: float = 90.0) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """A foreground and background RGB color whose luminances differ by at least ``min_gap``."""
    while True:
        fg = rng.integers(0, 256, 3)
        bg = rng.integers(0, 256, 3)
        lum = np.array([0.299, 0.587, 0.114])
        if abs(float(fg @ lum) - float(bg @ lum)) >= min_gap:
            return tuple(int(v) for v in fg), tuple(int(v) for v in bg)


def background(rng: np.random.Generator, size: int, color: tuple[int, ...]) -> Image.Image:
    """A flat background with a random linear gradient (up to +-40 levels)."""
    ramp = np.linspace(-1.0, 1.0, size)
    angle = rng.uniform(0, 2 * math.pi)
    grad = np.cos(angle) * ramp[None, :] + np.sin(angle) * ramp[:, None]
    amp = rng.uniform(0, 40)
    arr = np.clip(np.array(color, dtype=np.float32)[None, None, :] + amp * grad[..., None], 0, 255)
    return Image.fromarray(arr.astype(np.uint8), "RGB")


def affine_jitter(
    img: Image.Image, rng: np.random.Generator, rotate: float, scale: tuple[float, float], shear: float,
    shift: float, fill: tuple[int, ...],
) -> Image.Image:
    """Rotate (degrees), scale, shear and shift (fraction of the side) about the center."""
    size = img.size[0]
    a = math.radians(rng.uniform(-rotate, rotate))
    s = rng.uniform(*scale)
    sh = math.radians(rng.uniform(-shear, shear))
    tx, ty = rng.uniform(-shift, shift, 2) * size
    # Inverse map (output -> input) for PIL: M^-1 of rotation*shear*scale.
    cos, sin = math.cos(a), math.sin(a)
    m = np.array([[cos, -sin + math.tan(sh) * cos], [sin, cos + math.tan(sh) * sin]]) * s
    inv = np.linalg.inv(m)
    c = size / 2
    off = np.array([c, c]) - inv @ np.array([c + tx, c + ty])
    coeffs = (inv[0, 0], inv[0, 1], off[0], inv[1, 0], inv[1, 1], off[1])
    return img.transform(img.size, Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR, fillcolor=fill)


def finish(img: Image.Image, rng: np.random.Generator, resolution: int, noise: float) -> np.ndarray:
    """Downsample to ``resolution`` and add Gaussian pixel noise (std in levels); returns uint8 CHW."""
    small = img.resize((resolution, resolution), Image.Resampling.BOX)
    arr = np.asarray(small, dtype=np.float32)
    if noise > 0:
        arr = arr + rng.normal(0.0, noise, arr.shape).astype(np.float32)
    return np.clip(arr, 0, 255).astype(np.uint8).transpose(2, 0, 1)

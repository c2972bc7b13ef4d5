"""Procedural tasks: geometric shapes, textures and counting, drawn with PIL and numpy."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from dass_edge.data.render import affine_jitter, background, contrasting_colors, finish

__all__ = ["SHAPES", "TEXTURES", "render_shapes", "render_textures", "render_counts"]


def _polygon(n: int, r: float, c: float, phase: float = -math.pi / 2, inner: float | None = None) -> list:
    pts = []
    steps = 2 * n if inner is not None else n
    for i in range(steps):
        a = phase + 2 * math.pi * i / steps
        rr = r if (inner is None or i % 2 == 0) else r * inner
        pts.append((c + rr * math.cos(a), c + rr * math.sin(a)))
    return pts


def _draw_shape(draw: ImageDraw.ImageDraw, name: str, c: float, r: float, fg: tuple[int, ...], width: int) -> None:
    box = (c - r, c - r, c + r, c + r)
    if name == "circle":
        draw.ellipse(box, fill=fg)
    elif name == "ring":
        draw.ellipse(box, outline=fg, width=max(2, int(r / 3)))
    elif name == "square":
        draw.rectangle((c - 0.8 * r, c - 0.8 * r, c + 0.8 * r, c + 0.8 * r), fill=fg)
    elif name == "frame":
        draw.rectangle((c - 0.8 * r, c - 0.8 * r, c + 0.8 * r, c + 0.8 * r), outline=fg, width=max(2, int(r / 3)))
    elif name == "triangle":
        draw.polygon(_polygon(3, r, c), fill=fg)
    elif name == "diamond":
        draw.polygon(_polygon(4, r, c, phase=0.0), fill=fg)
    elif name == "pentagon":
        draw.polygon(_polygon(5, r, c), fill=fg)
    elif name == "hexagon":
        draw.polygon(_polygon(6, r, c), fill=fg)
    elif name == "star":
        draw.polygon(_polygon(5, r, c, inner=0.45), fill=fg)
    elif name == "cross":
        t = 0.3 * r
        draw.rectangle((c - r, c - t, c + r, c + t), fill=fg)
        draw.rectangle((c - t, c - r, c + t, c + r), fill=fg)
    elif name == "ellipse":
        draw.ellipse((c - r, c - 0.5 * r, c + r, c + 0.5 * r), fill=fg)
    elif name == "crescent":
        draw.ellipse(box, fill=fg)
    else:  # pragma: no cover - guarded by SHAPES
        raise ValueError(name)


SHAPES = ("circle", "ring", "square", "frame", "triangle", "diamond", "pentagon", "hexagon", "star", "cross",
          "ellipse", "crescent")


def render_shapes(
    n_per_class: int, resolution: int, rng: np.random.Generator, jitter: float = 1.0, clutter: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """One large shape per image among ``clutter`` small distractor strokes."""
    canvas = 2 * resolution
    labels = np.repeat(np.arange(len(SHAPES)), n_per_class)
    images = np.empty((len(labels), 3, resolution, resolution), dtype=np.uint8)
    for i in rng.permutation(len(labels)):
        name = SHAPES[int(labels[i])]
        fg, bg = contrasting_colors(rng)
        img = background(rng, canvas, bg)
        draw = ImageDraw.Draw(img)
        for _ in range(int(rng.integers(0, clutter + 1))):
            p = rng.uniform(0, canvas, 4)
            draw.line(tuple(p), fill=tuple(int(v) for v in rng.integers(0, 256, 3)), width=int(rng.integers(1, 3)))
        r = canvas * rng.uniform(0.25, 0.4)
        _draw_shape(draw, name, canvas / 2, r, fg, 2)
        if name == "crescent":
            off = r * 0.5
            draw.ellipse((canvas / 2 - r + off, canvas / 2 - r, canvas / 2 + r + off, canvas / 2 + r), fill=bg)
        img = affine_jitter(img, rng, rotate=180 * jitter, scale=(0.8, 1.1), shear=8 * jitter, shift=0.1 * jitter,
                            fill=bg)
        images[i] = finish(img, rng, resolution, noise=rng.uniform(0, 15 * jitter))
    return images, labels


def _texture(name: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A texture in [0, 1] with random phase, frequency and orientation jitter within its class."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    f = rng.uniform(4, 7)
    ph = rng.uniform(0, 2 * np.pi)
    a = rng.uniform(-0.15, 0.15)
    u = x * np.cos(a) + y * np.sin(a)
    v = -x * np.sin(a) + y * np.cos(a)
    if name == "stripes-h":
        t = np.sin(2 * np.pi * f * v + ph)
    elif name == "stripes-v":
        t = np.sin(2 * np.pi * f * u + ph)
    elif name == "stripes-diag":
        t = np.sin(2 * np.pi * f * (u + v) / math.sqrt(2) + ph)
    elif name == "stripes-anti":
        t = np.sin(2 * np.pi * f * (u - v) / math.sqrt(2) + ph)
    elif name == "checker":
        t = np.sign(np.sin(2 * np.pi * f * u / 1.5 + ph)) * np.sign(np.sin(2 * np.pi * f * v / 1.5 + ph))
    elif name == "grid":
        t = np.maximum(np.cos(2 * np.pi * f * u + ph), np.cos(2 * np.pi * f * v + ph)) ** 9
    elif name == "dots":
        t = (np.cos(2 * np.pi * f * u + ph) * np.cos(2 * np.pi * f * v + ph)) ** 7
    elif name == "rings":
        cx, cy = rng.uniform(0.3, 0.7, 2)
        t = np.sin(2 * np.pi * f * np.hypot(x - cx, y - cy) * 1.5 + ph)
    elif name == "waves":
        t = np.sin(2 * np.pi * f * v + 1.5 * np.sin(2 * np.pi * 2 * u + ph))
    elif name == "noise-coarse" or name == "noise-fine":
        cells = 4 if name == "noise-coarse" else 16
        g = rng.normal(size=(cells, cells)).astype(np.float32)
        t = np.asarray(Image.fromarray(g).resize((size, size), Image.Resampling.BICUBIC))
    elif name == "spiral":
        cx, cy = rng.uniform(0.35, 0.65, 2)
        r = np.hypot(x - cx, y - cy)
        th = np.arctan2(y - cy, x - cx)
        t = np.sin(2 * np.pi * f * r + 3 * th + ph)
    else:  # pragma: no cover - guarded by TEXTURES
        raise ValueError(name)
    t = t.astype(np.float32)
    return (t - t.min()) / max(float(t.max() - t.min()), 1e-6)


TEXTURES = ("stripes-h", "stripes-v", "stripes-diag", "stripes-anti", "checker", "grid", "dots", "rings", "waves",
            "noise-coarse", "noise-fine", "spiral")


def render_textures(
    n_per_class: int, resolution: int, rng: np.random.Generator, jitter: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Two random colors blended by a texture pattern, plus noise."""
    canvas = 2 * resolution
    labels = np.repeat(np.arange(len(TEXTURES)), n_per_class)
    images = np.empty((len(labels), 3, resolution, resolution), dtype=np.uint8)
    for i in rng.permutation(len(labels)):
        t = _texture(TEXTURES[int(labels[i])], canvas, rng)
        fg, bg = contrasting_colors(rng, min_gap=50)
        rgb = np.array(bg, np.float32) + t[..., None] * (np.array(fg, np.float32) - np.array(bg, np.float32))
        img = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")
        images[i] = finish(img, rng, resolution, noise=rng.uniform(5, 30 * jitter))
    return images, labels


def render_counts(
    n_per_class: int, resolution: int, rng: np.random.Generator, max_count: int = 8, jitter: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Count the blobs: class ``k`` shows ``k + 1`` discs of random size and color, placed apart."""
    canvas = 2 * resolution
    labels = np.repeat(np.arange(max_count), n_per_class)
    images = np.empty((len(labels), 3, resolution, resolution), dtype=np.uint8)
    for i in rng.permutation(len(labels)):
        n = int(labels[i]) + 1
        fg, bg = contrasting_colors(rng)
        img = background(rng, canvas, bg)
        draw = ImageDraw.Draw(img)
        centers: list[tuple[float, float]] = []
        r = canvas * rng.uniform(0.05, 0.08)
        tries = 0
        while len(centers) < n and tries < 2000:
            tries += 1
            p = tuple(rng.uniform(r + 1, canvas - r - 1, 2))
            if all(math.dist(p, q) > 2.3 * r for q in centers):
                centers.append(p)
        for cx, cy in centers:
            rr = r * rng.uniform(0.8, 1.2)
            draw.ellipse((cx - rr, cy - rr, cx + rr, cy + rr), fill=fg)
        img = affine_jitter(img, rng, rotate=0, scale=(1.0, 1.0), shear=0, shift=0, fill=bg)
        images[i] = finish(img, rng, resolution, noise=rng.uniform(0, 12 * jitter))
    return images, labels

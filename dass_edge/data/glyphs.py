"""Glyph-recognition tasks rendered from the fonts bundled with matplotlib (DejaVu, STIX, Computer Modern).

A class is one character; intra-class variety comes from the font (family, weight, slant), size,
stroke, affine jitter, colors, background gradient and pixel noise. Fonts that do not contain a
character are never used for it (checked against each font's character map).
"""

from __future__ import annotations

import functools
import os

import numpy as np
from PIL import ImageDraw, ImageFont

from dass_edge.data.render import affine_jitter, background, contrasting_colors, finish

__all__ = ["FONT_GROUPS", "font_dir", "render_glyphs"]

FONT_GROUPS: dict[str, tuple[str, ...]] = {
    "dejavu": (
        "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSans-BoldOblique.ttf",
        "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSansMono-Oblique.ttf",
        "DejaVuSansMono-BoldOblique.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf",
        "DejaVuSerif-BoldItalic.ttf",
    ),
    "stix": ("STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf"),
    "cm": ("cmr10.ttf", "cmss10.ttf", "cmtt10.ttf", "cmb10.ttf", "cmti10.ttf"),
}


def font_dir() -> str:
    import matplotlib

    return os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "fonts", "ttf")


@functools.cache
def _charmap(filename: str) -> frozenset[int]:
    from matplotlib.ft2font import FT2Font

    return frozenset(FT2Font(os.path.join(font_dir(), filename)).get_charmap())


@functools.lru_cache(maxsize=512)
def _font(filename: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(os.path.join(font_dir(), filename), size)


def fonts_for(char: str, groups: tuple[str, ...]) -> list[str]:
    return [f for g in groups for f in FONT_GROUPS[g] if ord(char) in _charmap(f)]


def render_glyphs(
    chars: str, groups: tuple[str, ...], n_per_class: int, resolution: int, rng: np.random.Generator,
    jitter: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Render ``n_per_class`` samples of each character; returns uint8 ``(N, 3, R, R)`` and labels.

    ``jitter`` scales rotation, shear, shift and noise (1.0 = the default difficulty).
    """
    canvas = 2 * resolution
    images = np.empty((len(chars) * n_per_class, 3, resolution, resolution), dtype=np.uint8)
    labels = np.repeat(np.arange(len(chars)), n_per_class)
    pools = [fonts_for(c, groups) for c in chars]
    for c, pool in zip(chars, pools):
        if not pool:
            raise ValueError(f"no bundled font draws {c!r} (U+{ord(c):04X})")
    order = rng.permutation(len(labels))  # interleave classes so the rng stream does not favor any
    for i in order:
        k = int(labels[i])
        font_file = pool_choice(pools[k], rng)
        size = int(canvas * rng.uniform(0.5, 0.8))
        fg, bg = contrasting_colors(rng)
        img = background(rng, canvas, bg)
        draw = ImageDraw.Draw(img)
        font = _font(font_file, size)
        stroke = int(rng.integers(0, 2 + canvas // 32))
        draw.text((canvas / 2, canvas / 2), chars[k], font=font, fill=fg, anchor="mm", stroke_width=stroke,
                  stroke_fill=fg)
        img = affine_jitter(img, rng, rotate=12 * jitter, scale=(0.85, 1.1), shear=10 * jitter,
                            shift=0.08 * jitter, fill=bg)
        images[i] = finish(img, rng, resolution, noise=rng.uniform(0, 12 * jitter))
    return images, labels


def pool_choice(pool: list[str], rng: np.random.Generator) -> str:
    return pool[int(rng.integers(len(pool)))]

"""Real-image task families built from images that Debian packages ship (no download, no glyph renderer).

- **emoji-***: colour emoji bitmaps of ``fonts-noto-color-emoji`` (NotoColorEmoji.ttf, CBDT bitmaps at
  109 px). A class is one emoji; a sample is the emoji scaled, rotated and shifted over a crop of a
  photograph (below) or a flat colour, half the time beside a smaller emoji of another class, with
  brightness/contrast jitter and pixel noise. Families split by Unicode block (faces, animals, food,
  objects, transport, people, activities), so they are different datasets of one kind.
- **photo-***: photographs of a desktop-background package (:data:`PHOTO_FAMILIES`: ``mate-backgrounds`` for
  photo-crops, ``plasma-workspace-wallpapers`` for photo-plasma, ``lomiri-wallpapers-16.04`` for photo-lomiri).
  A class is one region of one photograph; a sample is a small random crop of it (scale, aspect, flip, colour
  jitter, noise), so the model must recognise a scene from its texture and colours, not from a layout.

These renderings depend on Pillow/FreeType and on the package versions, so the meta-database stores
them once as frozen files (:mod:`dass_edge.data.frozen`); rendering is only needed to create them.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from dass_edge.data.render import finish
from dass_edge.errors import DassEdgeError

__all__ = ["EMOJI_FONT", "PHOTO_DIR", "EMOJI_FAMILIES", "EMOJI_CLASSES", "PHOTOS", "PHOTO_FAMILIES", "PhotoFamily",
           "emoji_classes", "photo_files", "render_emoji", "render_photo_crops", "photo_region_names"]

EMOJI_FONT = "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"
PHOTO_DIR = "/usr/share/backgrounds/mate"
_EMOJI_SIZE = 109  # the only bitmap strike of NotoColorEmoji

#: Per family, the first code point of 40 consecutive ones that NotoColorEmoji 2.042 draws in colour, or the 40
#: code points themselves (classes are fixed here, not discovered, so a task never changes shape with the font
#: version).
EMOJI_FAMILIES: dict[str, int | tuple[int, ...]] = {
    "faces": 0x1F600, "animals": 0x1F400, "food": 0x1F345, "objects": 0x1F4A1, "transport": 0x1F680,
    "people": 0x1F466, "activities": 0x1F3A0,
    # Supplemental Symbols and Pictographs (Unicode 9-13): more meta-training families whose classes overlap no
    # held-out family's.
    "snacks": 0x1F950, "assorted": 0x1F9C0,
    # Session 10: sports and buildings, and symbols (arrows, buttons, tools); the free colour runs next to faces,
    # animals and objects were left alone (they would be near copies of held-out families).
    "sports": 0x1F3C8, "symbols": 0x1F500,
    # Session 24 (meta-database v2 phase 15): weather, sky and plants (the 33 colour code points U+1F300-1F320, then
    # U+1F330-1F336), and the objects, creatures and plants of Unicode 13-15 (U+1FA90-1FAB7).
    "nature": tuple(range(0x1F300, 0x1F321)) + tuple(range(0x1F330, 0x1F337)), "gadgets": 0x1FA90,
}
EMOJI_CLASSES = 40
#: The photographs of mate-backgrounds 1.26 used by photo-crops (the PNGs there are flat synthetic art).
PHOTOS = ("abstract/Elephants.jpg", "desktop/GreenTraditional.jpg", "nature/Aqua.jpg", "nature/Blinds.jpg",
          "nature/Dune.jpg", "nature/FreshFlower.jpg", "nature/Garden.jpg", "nature/GreenMeadow.jpg",
          "nature/LadyBird.jpg", "nature/RainDrops.jpg", "nature/Storm.jpg", "nature/TwoWings.jpg",
          "nature/Wood.jpg", "nature/YellowFlower.jpg")


@dataclass(frozen=True)
class PhotoFamily:
    """Photographs one Debian package ships, as ``(name, path under directory)``: one photo-* task."""

    package: str
    directory: str
    photos: tuple[tuple[str, str], ...]


def _by_file_name(paths: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    return tuple((os.path.splitext(os.path.basename(p))[0], p) for p in paths)


#: The photo-* tasks, one per family. Session 25 (meta-database v2 phase 16) added the first photographs in
#: meta-training: ten of plasma-workspace-wallpapers 5.27 (its photographs; the rest are drawn art) and the first
#: ten of lomiri-wallpapers-16.04 by file name (skipping the texture analogpattern).
PHOTO_FAMILIES: dict[str, PhotoFamily] = {
    "crops": PhotoFamily("mate-backgrounds", PHOTO_DIR, _by_file_name(PHOTOS)),
    "plasma": PhotoFamily("plasma-workspace-wallpapers", "/usr/share/wallpapers", tuple(
        (n, f"{n}/contents/images/2560x1600.jpg")
        for n in ("BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow", "FallenLeaf", "Grey",
                  "Kite", "OneStandsOut", "Path"))),
    "lomiri": PhotoFamily("lomiri-wallpapers-16.04", "/usr/share/backgrounds", _by_file_name(tuple(
        f"{n}.jpg" for n in ("Bridge_by_Sander_Klootwijk", "Dragonfly_by_Bolly", "Picture_0B_by_freespace",
                             "Picture_1A_by_freespace", "Wine_by_Jakkub_Mede", "aitzgorri_by_Aitzol_Berasategi",
                             "free_by_Peter_Nerlich", "friends_by_Aitzol_Berasategi", "greentock_by_Peter_Nerlich",
                             "life_by_Aitzol_Berasategi")))),
}


def _need(path: str, package: str) -> None:
    if not os.path.exists(path):
        raise DassEdgeError(f"{path} is missing; this task is built from the Debian package {package} "
                            f"(apt-get install {package})")


@functools.cache
def _emoji_font() -> ImageFont.FreeTypeFont:
    _need(EMOJI_FONT, "fonts-noto-color-emoji")
    return ImageFont.truetype(EMOJI_FONT, _EMOJI_SIZE)


@functools.cache
def _emoji_bitmap(cp: int) -> Image.Image | None:
    """The emoji as an RGBA image cropped to its ink, or None if the font has no colour bitmap for it."""
    font = _emoji_font()
    img = Image.new("RGBA", (2 * _EMOJI_SIZE, 2 * _EMOJI_SIZE), (0, 0, 0, 0))
    ImageDraw.Draw(img).text((_EMOJI_SIZE // 4, _EMOJI_SIZE // 4), chr(cp), font=font, embedded_color=True)
    box = img.getbbox()
    if box is None:
        return None
    img = img.crop(box)
    alpha = np.asarray(img)[..., 3]
    rgb = np.asarray(img)[..., :3][alpha > 0]
    if rgb.size == 0 or rgb.std() < 8:  # monochrome fallback (tofu / outline), not a colour emoji
        return None
    return img


def emoji_classes(family: str) -> tuple[int, ...]:
    """The code points of ``family`` (its classes)."""
    entry = EMOJI_FAMILIES[family]
    return entry if isinstance(entry, tuple) else tuple(range(entry, entry + EMOJI_CLASSES))


def photo_files(family: str = "crops") -> tuple[str, ...]:
    """Absolute paths of the photographs of ``family`` (a clear error when its package is missing)."""
    fam = PHOTO_FAMILIES[family]
    files = tuple(os.path.join(fam.directory, p) for _, p in fam.photos)
    for f in files:
        _need(f, fam.package)
    return files


@functools.cache
def _photo(path: str, side: int = 640) -> Image.Image:
    img = Image.open(path).convert("RGB")
    img.thumbnail((side * 2, side * 2), Image.Resampling.BOX)
    return img


def _random_crop(img: Image.Image, rng: np.random.Generator, frac: tuple[float, float], out: int) -> Image.Image:
    w, h = img.size
    side = int(min(w, h) * rng.uniform(*frac))
    aspect = rng.uniform(0.8, 1.25)
    cw, ch = max(4, min(w, int(side * aspect))), max(4, min(h, int(side / aspect)))
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    return img.crop((x, y, x + cw, y + ch)).resize((out, out), Image.Resampling.BILINEAR)


def _jitter_colour(arr: np.ndarray, rng: np.random.Generator, amount: float) -> np.ndarray:
    """Brightness, contrast and per-channel gain jitter on a float HWC array."""
    mean = arr.mean()
    arr = (arr - mean) * rng.uniform(1 - amount, 1 + amount) + mean * rng.uniform(1 - amount, 1 + amount)
    return arr * rng.uniform(1 - amount / 2, 1 + amount / 2, 3)[None, None, :]


def _paste(canvas: Image.Image, glyph: Image.Image | None, rng: np.random.Generator,
           scale: tuple[float, float]) -> None:
    """Paste ``glyph`` scaled to a random fraction of the canvas, rotated and at a random position."""
    if glyph is None:
        return
    size = canvas.size[0]
    side = int(size * rng.uniform(*scale))
    g = glyph.resize((side, side), Image.Resampling.BILINEAR)
    g = g.rotate(float(rng.uniform(-30, 30)), resample=Image.Resampling.BILINEAR, expand=False)
    x = int(rng.integers(0, size - side + 1))
    y = int(rng.integers(0, size - side + 1))
    canvas.paste(g, (x, y), g)


def render_emoji(family: str, classes: tuple[int, ...], n_per_class: int, resolution: int,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n_per_class`` samples of each emoji of ``classes`` over photo or flat backgrounds."""
    canvas = max(4 * resolution, 64)
    photos = photo_files()
    labels = np.repeat(np.arange(len(classes)), n_per_class)
    images = np.empty((len(labels), 3, resolution, resolution), dtype=np.uint8)
    for i in rng.permutation(len(labels)):
        glyph = _emoji_bitmap(classes[int(labels[i])])
        if glyph is None:
            raise DassEdgeError(f"{EMOJI_FONT} has no colour bitmap for U+{classes[int(labels[i])]:04X}; "
                                "this task needs fonts-noto-color-emoji 2.042 or later")
        if rng.random() < 0.6:
            bg = _random_crop(_photo(photos[int(rng.integers(len(photos)))]), rng, (0.15, 0.6), canvas)
        else:
            bg = Image.new("RGB", (canvas, canvas), tuple(int(v) for v in rng.integers(0, 256, 3)))
        if rng.random() < 0.5:  # clutter: a smaller emoji of another class, partly covered by the target
            other = classes[int(rng.integers(len(classes)))]
            if other != classes[int(labels[i])]:
                _paste(bg, _emoji_bitmap(other), rng, (0.25, 0.45))
        _paste(bg, glyph, rng, (0.35, 0.75))
        arr = _jitter_colour(np.asarray(bg, dtype=np.float32), rng, 0.3)
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
        images[i] = finish(img, rng, resolution, noise=rng.uniform(0, 16))
    return images, labels


#: Each photograph is cut into REGIONS x REGIONS regions; a class is one region of one photograph, so
#: classes from the same photograph share its palette and light (a fine-grained task, not 14 easy ones).
REGIONS = 2


@functools.cache
def _photo_region(family: str, index: int) -> Image.Image:
    photos = photo_files(family)
    img = _photo(photos[index // REGIONS**2])
    r = index % REGIONS**2
    w, h = img.size[0] // REGIONS, img.size[1] // REGIONS
    x, y = (r % REGIONS) * w, (r // REGIONS) * h
    return img.crop((x, y, x + w, y + h))


def photo_region_names(family: str = "crops") -> tuple[str, ...]:
    """Class names of ``family``'s task, ``photo/region``; known without the package installed."""
    return tuple(f"{n}/{r}" for n, _ in PHOTO_FAMILIES[family].photos for r in range(REGIONS**2))


def render_photo_crops(n_per_class: int, resolution: int, rng: np.random.Generator,
                       family: str = "crops") -> tuple[np.ndarray, np.ndarray]:
    """``n_per_class`` small crops of each region of each photograph of ``family`` (the class is the region)."""
    n_classes = len(photo_files(family)) * REGIONS**2
    canvas = max(4 * resolution, 64)
    labels = np.repeat(np.arange(n_classes), n_per_class)
    images = np.empty((len(labels), 3, resolution, resolution), dtype=np.uint8)
    for i in rng.permutation(len(labels)):
        # Crop 1.5x larger, rotate, then keep the centre: no fill colour at the corners to learn from.
        big = _random_crop(_photo_region(family, int(labels[i])), rng, (0.25, 0.6), canvas * 3 // 2)
        if rng.random() < 0.5:
            big = big.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        big = big.rotate(float(rng.uniform(-25, 25)), resample=Image.Resampling.BILINEAR)
        m = (big.size[0] - canvas) // 2
        crop = big.crop((m, m, m + canvas, m + canvas))
        arr = _jitter_colour(np.asarray(crop, dtype=np.float32), rng, 0.35)
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
        images[i] = finish(img, rng, resolution, noise=rng.uniform(0, 8))
    return images, labels

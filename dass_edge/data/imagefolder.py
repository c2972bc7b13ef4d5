"""ImageFolder loader: ``root/<class>/*.png`` or ``root/{train,val,test}/<class>/*``.

Images are decoded with PIL, center-cropped to a square, resized to the working resolution and
kept in memory as uint8. Without split folders, each class is split 70/15/15 by a seeded
permutation, so the split is the same on every run and machine.
"""

from __future__ import annotations

import warnings
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from dass_edge.data.task import Split, TaskData
from dass_edge.errors import DassEdgeError

__all__ = ["IMAGE_SUFFIXES", "load_image_folder"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
_SPLITS = ("train", "val", "test")
_FRACTIONS = (0.70, 0.15)


def _class_dirs(root: Path) -> list[Path]:
    dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not dirs:
        raise DassEdgeError(f"{root} has no class folders; expected one sub-folder of images per class")
    return dirs


def _images_in(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DassEdgeError(f"class folder {folder} has no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def _decode(path: Path, resolution: int) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # over MAX_IMAGE_PIXELS: refuse
            with Image.open(path) as im:
                im = _to_rgb(im, path)
                w, h = im.size
                side = min(w, h)
                im = im.crop(((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side))
                im = im.resize((resolution, resolution), Image.Resampling.BILINEAR)
                return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DassEdgeError(f"image {path} has more than {Image.MAX_IMAGE_PIXELS} pixels (a decompression-bomb "
                            "guard); shrink it or remove it") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise DassEdgeError(f"cannot read image {path}; remove or replace it") from None


def _to_rgb(im: Image.Image, path: Path) -> Image.Image:
    """8-bit RGB. 16-bit images are scaled to 8 bits (PIL's own ``convert`` clips them at 255)."""
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        values = np.asarray(im).astype(np.int64)
        if values.min(initial=0) < 0 or values.max(initial=0) > 65535:
            raise DassEdgeError(f"image {path} has 32-bit integer pixels outside 0..65535; save it as 8 or 16 bit")
        if im.mode != "I" or values.max(initial=0) > 255:  # 16-bit (a mode "I" image within 0..255 is 8-bit)
            values = (values * 255 + 32767) // 65535  # round to nearest
        return Image.fromarray(values.astype(np.uint8)).convert("RGB")
    if im.mode == "F":
        raise DassEdgeError(f"image {path} has floating-point pixels; save it as an 8- or 16-bit image")
    return im.convert("RGB")


def _to_split(items: list[tuple[Path, int]], resolution: int) -> Split:
    if not items:
        return Split(torch.empty((0, 3, resolution, resolution), dtype=torch.uint8), torch.empty(0, dtype=torch.long))
    images = np.stack([_decode(p, resolution) for p, _ in items])
    labels = np.array([k for _, k in items], dtype=np.int64)
    return Split(torch.from_numpy(images), torch.from_numpy(labels))


def load_image_folder(root: str | Path, resolution: int = 32) -> TaskData:
    """Load an image-folder dataset.

    Raises:
        DassEdgeError: missing folder, no classes, an empty class, an unreadable image, or split
            folders whose classes differ.
    """
    root = Path(root)
    if not root.is_dir():
        raise DassEdgeError(f"data folder {root} does not exist; give a folder with one sub-folder per class")
    per_split: dict[str, list[tuple[Path, int]]] = {s: [] for s in _SPLITS}
    if (root / "train").is_dir():
        classes = [d.name for d in _class_dirs(root / "train")]
        for split in _SPLITS:
            if not (root / split).is_dir():
                continue
            names = [d.name for d in _class_dirs(root / split)]
            if not set(names) <= set(classes):
                extra = sorted(set(names) - set(classes))
                raise DassEdgeError(f"{root / split} has classes not in train: {extra}")
            for name in names:
                per_split[split] += [(p, classes.index(name)) for p in _images_in(root / split / name)]
        if not per_split["val"]:  # carve a validation split out of train when none is given
            train = per_split["train"]
            rng = np.random.default_rng(zlib.crc32(str(len(train)).encode()))
            order = rng.permutation(len(train))
            cut = max(1, int(len(train) * 0.15))
            per_split["val"] = [train[i] for i in order[:cut]]
            per_split["train"] = [train[i] for i in order[cut:]]
    else:
        class_dirs = _class_dirs(root)
        classes = [d.name for d in class_dirs]
        for k, d in enumerate(class_dirs):
            files = _images_in(d)
            rng = np.random.default_rng(zlib.crc32(d.name.encode()))
            order = rng.permutation(len(files))
            n_train = max(1, round(len(files) * _FRACTIONS[0]))
            n_val = round(len(files) * _FRACTIONS[1])
            per_split["train"] += [(files[i], k) for i in order[:n_train]]
            per_split["val"] += [(files[i], k) for i in order[n_train : n_train + n_val]]
            per_split["test"] += [(files[i], k) for i in order[n_train + n_val :]]
    if len(classes) < 2:
        raise DassEdgeError(f"{root} has {len(classes)} class; a classifier needs at least 2")
    splits = {s: _to_split(per_split[s], resolution) for s in _SPLITS}
    return TaskData(name=root.name, class_names=tuple(classes), resolution=resolution, source=str(root.resolve()),
                    **splits)

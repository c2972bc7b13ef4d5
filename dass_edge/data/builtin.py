"""Registry of built-in offline tasks, generated deterministically and cached in the user cache dir.

Each task is a function of (split, resolution, rng) registered with :func:`register_task`; the
registry, not an if-chain, is what ``dass-edge data list`` shows. Nothing is downloaded: glyphs come
from matplotlib's bundled fonts, the rest is drawn procedurally.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dass_edge.data.glyphs import render_glyphs
from dass_edge.data.packaged import (
    EMOJI_FAMILIES,
    PHOTO_FAMILIES,
    emoji_classes,
    photo_region_names,
    render_emoji,
    render_photo_crops,
)
from dass_edge.data.procedural import SHAPES, TEXTURES, render_counts, render_shapes, render_textures
from dass_edge.data.task import Split, TaskData
from dass_edge.errors import DassEdgeError
from dass_edge.io import atomic_write

__all__ = ["BuiltinTask", "DATA_VERSION", "SPLIT_SIZES", "builtin_tasks", "cache_dir", "load_builtin", "register_task",
           "render_arrays"]

#: Bump when rendering changes, so stale caches are not reused.
DATA_VERSION = 1
#: Images per class in each split.
SPLIT_SIZES = {"train": 150, "val": 40, "test": 40}
#: The emoji families have fewer training images, so their teachers stay below saturation (60-95%).
PACKAGED_SPLITS = {"train": 100, "val": 40, "test": 40}

Renderer = Callable[[int, int, np.random.Generator], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class BuiltinTask:
    name: str
    class_names: tuple[str, ...]
    render: Renderer  # (n_per_class, resolution, rng) -> (uint8 N x 3 x R x R, labels)
    description: str
    flip_ok: bool = False
    per_class: dict[str, int] | None = None  # images per class per split (default: SPLIT_SIZES)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def split_size(self, split: str) -> int:
        return (self.per_class or SPLIT_SIZES)[split] * self.num_classes


_TASKS: dict[str, BuiltinTask] = {}


def register_task(task: BuiltinTask) -> BuiltinTask:
    if task.name in _TASKS:
        raise ValueError(f"task {task.name!r} registered twice")
    _TASKS[task.name] = task
    return task


def builtin_tasks() -> dict[str, BuiltinTask]:
    return dict(_TASKS)


def _glyph_task(name: str, chars: str, groups: tuple[str, ...], description: str) -> None:
    def render(n: int, res: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return render_glyphs(chars, groups, n, res, rng)

    names = tuple(f"U+{ord(c):04X} {c}" for c in chars)
    register_task(BuiltinTask(name, names, render, description))


_ALL_FONTS = ("dejavu", "stix", "cm")
_UNICODE_FONTS = ("dejavu", "stix")
_glyph_task("glyph-latin-upper", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", _ALL_FONTS, "Latin capitals in 21 fonts")
_glyph_task("glyph-latin-lower", "abcdefghijklmnopqrstuvwxyz", _ALL_FONTS, "Latin small letters in 21 fonts")
_glyph_task("glyph-digits", "0123456789", _ALL_FONTS, "Arabic numerals in 21 fonts")
_glyph_task("glyph-greek-upper", "ΑΒΓΔΕΖΗΘΙΚΛΜΝΞΟΠΡΣΤΥΦΧΨΩ", _UNICODE_FONTS, "Greek capitals")
_glyph_task("glyph-greek-lower", "αβγδεζηθικλμνξοπρστυφχψω", _UNICODE_FONTS, "Greek small letters")
_glyph_task("glyph-cyrillic-upper", "АБВГДЕЖЗИЙКЛМНОПРСТУФХЦЧШЩЪЫЬЭЮЯ", _UNICODE_FONTS, "Cyrillic capitals")
_glyph_task("glyph-cyrillic-lower", "абвгдежзийклмнопрстуфхцчшщъыьэюя", _UNICODE_FONTS, "Cyrillic small letters")
_glyph_task("glyph-armenian", "".join(chr(c) for c in range(0x531, 0x557)), ("dejavu",), "Armenian capitals")
_glyph_task("glyph-georgian", "".join(chr(c) for c in range(0x10D0, 0x10F1)), ("dejavu",), "Georgian Mkhedruli")
_glyph_task("glyph-hebrew", "אבגדהוזחטיכלמנסעפצקרשת", ("dejavu",), "Hebrew letters")
_glyph_task("glyph-math", "∀∂∃∅∇∈∉∏∑∓√∝∞∠∧∨∩∪∫≈≠≡≤≥⊂⊃⊆⊇⊕⊗", _UNICODE_FONTS, "Mathematical operators")
_glyph_task("glyph-arrows", "".join(chr(c) for c in range(0x2190, 0x21A0)), _UNICODE_FONTS, "Arrows")
# Session 16: two glyph families unlike letters, for meta-database v2 phase 7: Braille cells (dot layouts,
# the letters a-p) and Canadian syllabics (4 shapes in 4 orientations each: rotation and mirror tell them apart).
_glyph_task("glyph-braille", "⠁⠃⠉⠙⠑⠋⠛⠓⠊⠚⠅⠇⠍⠝⠕⠏", _UNICODE_FONTS, "Braille letters a-p")
_glyph_task("glyph-syllabics", "ᐁᐃᐅᐊᐯᐱᐳᐸᑌᑎᑐᑕᑫᑭᑯᑲ", ("dejavu",), "Canadian syllabics: 4 shapes x 4 orientations")
# Session 17: two more non-emoji glyph families for ImageNet-stem teachers (meta-database v2 phase 8): Arabic
# letters (isolated forms; many told apart by their dots) and Tifinagh (Berber letters built of circles, bars and
# dots). Symbol sets (chess pieces, zodiac signs) were tried first and dropped: their glyphs fill a few pixels of a
# 16 px image and no 64 px ImageNet-stem teacher rose above chance on them.
_glyph_task("glyph-arabic", "ابتثجحخدذرزسشصضطظعغفقكلمنهوي", ("dejavu",), "Arabic letters (isolated forms)")
_glyph_task("glyph-tifinagh", "".join(chr(c) for c in range(0x2D30, 0x2D48)), ("dejavu",), "Tifinagh letters")
# Session 18: meta-database v2 phase 9, more ImageNet-stem teachers off emoji: N'Ko (strokes, loops and bars) and Lao
# consonants (rounded letters told apart by small loops and tails: at 16 px some are close, a harder task).
_glyph_task("glyph-nko", "".join(chr(c) for c in range(0x7CA, 0x7E8)), ("dejavu",), "N'Ko letters")
_glyph_task("glyph-lao", "ກຂຄງຈຊຍດຕຖທນບປຜຝພຟມຢຣລວສຫອຮ", ("dejavu",), "Lao consonants")
# Session 19: phase 10, two more ImageNet-stem tasks off emoji and off every script used so far: Lisu (Latin-like
# capitals, many rotated or mirrored) and monochrome pictographic symbols (weather, hands, crosses, signs).
_glyph_task("glyph-lisu", "".join(chr(c) for c in range(0xA4D0, 0xA4F8)), ("dejavu",), "Lisu letters")
_glyph_task("glyph-misc-symbols", "".join(chr(c) for c in range(0x2600, 0x2640)), ("dejavu",), "Miscellaneous symbols")
# Session 20: phase 11, the first meta-training tasks at 32 px (small-stem teachers): IPA letters (turned and hooked
# Latin letters, several mirror or rotate a Latin one) and currency signs (letters crossed by bars and strokes).
# Only the code points DejaVu draws: U+0250-0277 all, and 26 of U+20A0-20BF.
_glyph_task("glyph-ipa", "".join(chr(c) for c in range(0x250, 0x278)), ("dejavu",), "IPA letters")
_glyph_task("glyph-currency", "₠₡₢₣₤₥₦₧₨₩₪₫€₭₮₯₰₱₲₳₴₵₸₹₺₽", ("dejavu",), "Currency signs")
# Session 21: phase 12, two more 32 px meta-training tasks (other small-stem teacher shapes): Ogham letters (1-5
# strokes across or beside a stem line) and dingbats (scissors, pens, checks, crosses, stars). Only the code points
# DejaVu draws: U+1681-169A all, and 36 of U+2701-2727.
_glyph_task("glyph-ogham", "".join(chr(c) for c in range(0x1681, 0x169B)), ("dejavu",), "Ogham letters")
_glyph_task("glyph-dingbats", "✁✂✃✄✆✇✈✉✌✍✎✏✐✑✒✓✔✕✖✗✘✙✚✛✜✝✞✟✠✡✢✣✤✥✦✧", ("dejavu",), "Dingbats")
# Session 23: phase 13, the first held-out tasks at 32 px (the demo's resolution; every other held-out task is at 16
# or 64 px): miscellaneous technical symbols (brackets, corners, keyboard and APL signs) and letterlike symbols
# (double-struck, script and black-letter capitals, unit signs). Only the code points DejaVu draws: 38 of
# U+2300-237F, and the first 40 of U+2100-214F.
_glyph_task("glyph-technical", "⌀⌁⌂⌃⌄⌅⌆⌇⌈⌉⌊⌋⌌⌍⌎⌏⌐⌑⌘⌙⌜⌝⌞⌟⌠⌡⌤⌥⌦⌧⌨⌫⌬⍳⍴⍵⍺⍽", ("dejavu",), "Technical symbols")
_glyph_task("glyph-letterlike", "℀℁ℂ℃℄℅℆ℇ℈℉ℋℌℍℎℏℐℑℒℓ℔ℕ№℗℘ℙℚℛℜℝ℞℟℠℡™℣ℤ℥Ω℧ℨ", ("dejavu",), "Letterlike symbols")
# Session 24: phase 14, two more meta-training tasks at 32 px, families no task uses: domino tiles (pip pairs, the
# first 40 horizontal tiles, U+1F031-1F058) and number forms (the first 40 DejaVu draws in U+2150-218F: vulgar
# fractions, Roman numerals).
_glyph_task("glyph-domino", "".join(chr(c) for c in range(0x1F031, 0x1F059)), ("dejavu",), "Domino tiles")
_glyph_task("glyph-number-forms", "⅐⅑⅒⅓⅔⅕⅖⅗⅘⅙⅚⅛⅜⅝⅞⅟ⅠⅡⅢⅣⅤⅥⅦⅧⅨⅩⅪⅫⅬⅭⅮⅯⅰⅱⅲⅳⅴⅵⅶⅷ", ("dejavu",), "Number forms")
register_task(BuiltinTask("shapes", SHAPES, lambda n, r, g: render_shapes(n, r, g),
                          "12 geometric shapes, rotated and scaled, among distractor strokes", flip_ok=True))
register_task(BuiltinTask("textures", TEXTURES, lambda n, r, g: render_textures(n, r, g),
                          "12 procedural textures with random colors, phase and frequency"))
register_task(BuiltinTask("count-dots", tuple(str(k) for k in range(1, 9)), lambda n, r, g: render_counts(n, r, g),
                          "count 1-8 discs", flip_ok=True))



def _emoji_task(family: str) -> None:
    classes = emoji_classes(family)

    def render(n: int, res: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return render_emoji(family, classes, n, res, rng)

    register_task(BuiltinTask(f"emoji-{family}", tuple(f"U+{c:04X} {chr(c)}" for c in classes), render,
                              f"colour emoji: {family} (fonts-noto-color-emoji)", per_class=PACKAGED_SPLITS))


for _family in EMOJI_FAMILIES:
    _emoji_task(_family)


def _photo_task(family: str) -> None:
    def render(n: int, res: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return render_photo_crops(n, res, rng, family)

    register_task(BuiltinTask(f"photo-{family}", photo_region_names(family), render,
                              f"photo regions ({PHOTO_FAMILIES[family].package})"))


for _family in PHOTO_FAMILIES:
    _photo_task(_family)


def cache_dir() -> Path:
    """``$DASS_EDGE_CACHE`` if set, else the platform user cache dir (e.g. ``~/.cache/dass-edge``)."""
    env = os.environ.get("DASS_EDGE_CACHE")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("dass-edge"))


def _seed(name: str, split: str, resolution: int) -> int:
    return zlib.crc32(f"{name}/{split}/{resolution}/v{DATA_VERSION}".encode())


def render_arrays(name: str, resolution: int) -> dict[str, np.ndarray]:
    """Render every split of task ``name`` (deterministic for a given renderer and package versions)."""
    task = _TASKS[name]
    arrays: dict[str, np.ndarray] = {}
    for split, n in (task.per_class or SPLIT_SIZES).items():
        images, labels = task.render(n, resolution, np.random.default_rng(_seed(name, split, resolution)))
        arrays[f"{split}_x"], arrays[f"{split}_y"] = images, labels.astype(np.int64)
    return arrays


def load_builtin(name: str, resolution: int = 32) -> TaskData:
    """Load the built-in task ``name`` at ``resolution``: its frozen copy when the meta-database froze it
    (:mod:`dass_edge.data.frozen`), else rendered on first use and cached."""
    from dass_edge.data.frozen import load_frozen_arrays

    if name not in _TASKS:
        raise DassEdgeError(f"unknown task {name!r}; see 'dass-edge data list' for the built-in tasks")
    if not 8 <= resolution <= 128:
        raise DassEdgeError(f"resolution {resolution} is outside 8..128 for built-in tasks")
    task = _TASKS[name]
    frozen = load_frozen_arrays(name, resolution)
    if frozen is not None:
        return _task_data(task, resolution, frozen)
    path = cache_dir() / "tasks" / f"{name}-r{resolution}-v{DATA_VERSION}.npz"
    arrays: dict[str, np.ndarray] = {}
    if path.is_file():
        try:
            with np.load(path) as f:
                arrays = {k: f[k] for k in f.files}
        except (OSError, ValueError, zlib.error, zipfile.BadZipFile):
            arrays = {}  # corrupt cache: regenerate below
    if not arrays:
        arrays = render_arrays(name, resolution)

        def write(p: Path) -> None:
            with open(p, "wb") as fh:
                np.savez(fh, **arrays)

        try:
            atomic_write(path, write)
        except (OSError, DassEdgeError):
            pass  # a read-only cache is fine: the task is simply regenerated next time
    return _task_data(task, resolution, arrays)


def _task_data(task: BuiltinTask, resolution: int, arrays: dict[str, np.ndarray]) -> TaskData:
    splits = {s: Split(torch.from_numpy(arrays[f"{s}_x"]), torch.from_numpy(arrays[f"{s}_y"])) for s in SPLIT_SIZES}
    return TaskData(name=task.name, class_names=task.class_names, resolution=resolution, flip_ok=task.flip_ok,
                    source="builtin", **splits)

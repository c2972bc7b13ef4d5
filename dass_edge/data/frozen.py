"""Frozen task data: a built-in task's pixels stored once, with a checksum, so every machine reads the same.

Built-in tasks are rendered (fonts, photographs, Pillow, FreeType), and renderings differ across library
and package versions: two glyph tasks rendered differently on another machine. Database rows are only
comparable if their images are the same everywhere, so the meta-database keeps each task it uses as a
uint8 ``.npz`` (train/val/test images and labels) in ``metadb/tasks/``, listed with its sha256 in
``SHA256SUMS`` there. :func:`load_frozen_arrays` verifies the checksum before use: a corrupt or changed file is a
one-line error, never silently different data.

Files are stored at :data:`STORED_RESOLUTION`. A task used at a multiple of it (the 64 px ImageNet-stem
tasks) is upsampled by pixel repetition, an exact integer rule that is the same on every machine.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

from dass_edge.errors import DassEdgeError
from dass_edge.io import atomic_write, file_sha256

__all__ = ["MANIFEST", "STORED_RESOLUTION", "check_frozen", "frozen_dir", "frozen_file", "freeze_task",
           "load_frozen_arrays", "read_frozen", "read_manifest", "task_file_sha", "verify_frozen"]

MANIFEST = "SHA256SUMS"
STORED_RESOLUTION = 16
_SPLITS = ("train", "val", "test")
_verified: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256, verified this process


def frozen_dir() -> Path | None:
    """``$DASS_EDGE_FROZEN_TASKS``, else ``metadb/tasks`` of a source checkout; None if neither exists."""
    env = os.environ.get("DASS_EDGE_FROZEN_TASKS")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parents[2] / "metadb" / "tasks"
    return here if here.is_dir() else None


def frozen_file(name: str) -> str:
    return f"{name}-r{STORED_RESOLUTION}.npz"


def read_manifest(folder: Path) -> dict[str, str]:
    """``SHA256SUMS`` as ``{file name: sha256}`` (``sha256sum`` format, so ``sha256sum -c`` checks it)."""
    path = folder / MANIFEST
    if not path.is_file():
        return {}
    out = {}
    for i, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        sha, _, fname = line.partition("  ")
        if len(sha) != 64 or not fname:
            raise DassEdgeError(f"{path}:{i} is not a 'sha256  file' line; restore the file from git")
        out[fname.strip()] = sha
    return out


def task_file_sha(name: str) -> tuple[str, str] | None:
    """``(file name, sha256)`` of the frozen copy of task ``name``, if the manifest lists one."""
    folder = frozen_dir()
    if folder is None:
        return None
    fname = frozen_file(name)
    sha = read_manifest(folder).get(fname)
    return (fname, sha) if sha else None


def check_frozen(name: str, sha256: str) -> None:
    """Raise unless task ``name``'s frozen copy is the one with ``sha256`` (a row's recorded data)."""
    found = task_file_sha(name)
    if found is None:
        raise DassEdgeError(f"task {name} was built from a frozen file (sha256 {sha256[:12]}...) that is not in "
                            f"{frozen_dir() or 'metadb/tasks'}; run from a source checkout or set "
                            f"DASS_EDGE_FROZEN_TASKS")
    if found[1] != sha256:
        raise DassEdgeError(f"task {name}: the frozen file {found[0]} (sha256 {found[1][:12]}...) is not the one "
                            f"its rows were built from ({sha256[:12]}...)")


def verify_frozen(name: str) -> tuple[Path, str] | None:
    """``(path, sha256)`` of task ``name``'s frozen file once its bytes match the manifest (None when the
    task is not frozen). The checksum is computed once per file per process.

    Raises:
        DassEdgeError: the file is listed but missing, or does not match its recorded sha256.
    """
    found = task_file_sha(name)
    if found is None:
        return None
    folder = frozen_dir()
    assert folder is not None
    fname, sha = found
    path = folder / fname
    if not path.is_file():
        raise DassEdgeError(f"frozen task file {path} is listed in {MANIFEST} but missing; restore it from git")
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if _verified.get(key) != sha:
        actual = file_sha256(path)
        if actual != sha:
            raise DassEdgeError(f"frozen task file {path} does not match its sha256 in {MANIFEST} (corrupt or "
                                f"changed); restore it from git")
        _verified[key] = sha
    return path, sha


def read_frozen(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a frozen file as stored (every split's ``_x`` and ``_y``).

    Raises:
        DassEdgeError: the file is not a readable ``.npz`` or lacks a split.
    """
    try:
        with np.load(path) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, zlib.error, EOFError, zipfile.BadZipFile) as e:
        raise DassEdgeError(f"frozen task file {path} cannot be read ({type(e).__name__}); restore it from git") \
            from None
    missing = [f"{s}_{xy}" for s in _SPLITS for xy in "xy" if f"{s}_{xy}" not in arrays]
    if missing:
        raise DassEdgeError(f"frozen task file {path} lacks {', '.join(missing)}; restore it from git")
    return arrays


def load_frozen_arrays(name: str, resolution: int) -> dict[str, np.ndarray] | None:
    """The frozen images of task ``name`` at ``resolution`` (None when the task is not frozen).

    Raises:
        DassEdgeError: the file is missing, corrupt or does not match its recorded sha256, or the
            resolution is not a multiple of the stored one.
    """
    found = verify_frozen(name)
    if found is None:
        return None
    if resolution % STORED_RESOLUTION:
        raise DassEdgeError(f"task {name} is stored at {STORED_RESOLUTION} px; use a multiple of it "
                            f"(got {resolution})")
    arrays = read_frozen(found[0])
    k = resolution // STORED_RESOLUTION
    if k > 1:
        for s in _SPLITS:
            arrays[f"{s}_x"] = arrays[f"{s}_x"].repeat(k, axis=2).repeat(k, axis=3)
    return arrays


def freeze_task(name: str, folder: Path) -> tuple[str, str]:
    """Render task ``name`` at the stored resolution, write it to ``folder`` and record its sha256.

    Refuses to replace a file the manifest already lists (frozen means frozen). Returns
    ``(file name, sha256)``.
    """
    from dass_edge.data.builtin import render_arrays

    folder.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(folder)
    fname = frozen_file(name)
    if fname in manifest:
        raise DassEdgeError(f"{folder / fname} is already frozen; delete it and its {MANIFEST} line to redo it")
    arrays = render_arrays(name, STORED_RESOLUTION)

    def write(p: Path) -> None:
        with open(p, "wb") as fh:
            np.savez_compressed(fh, **arrays)

    atomic_write(folder / fname, write)
    sha = file_sha256(folder / fname)
    manifest[fname] = sha
    lines = "".join(f"{v}  {k}\n" for k, v in sorted(manifest.items()))
    atomic_write(folder / MANIFEST, lambda p: p.write_text(lines, encoding="utf-8"))
    return fname, sha

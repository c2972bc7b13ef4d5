"""Small I/O helpers: atomic writes and checksums, so a killed job never leaves half a file."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from dass_edge.errors import DassEdgeError
from dass_edge.validate import check_finite_record

__all__ = ["atomic_write", "atomic_write_json", "file_sha256", "ensure_writable_dir"]


def ensure_writable_dir(path: Path) -> Path:
    """Create ``path`` (and parents) or raise a one-line error saying why it cannot be used."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DassEdgeError(f"cannot create output folder {path}: {e.strerror}; choose another location") from None
    if not os.access(path, os.W_OK):
        raise DassEdgeError(f"output folder {path} is not writable; choose another location")
    return path


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file next to ``path``, then rename it into place."""
    path = Path(path)
    if path.is_dir():
        raise DassEdgeError(f"{path} is a folder; give a file name to write")
    ensure_writable_dir(path.parent if str(path.parent) else Path("."))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_json(path: str | Path, data: object) -> Path:
    """Write ``data`` as JSON; NaN/infinity are refused (they are not JSON, and mean a run went wrong)."""
    check_finite_record(data, str(path))
    text = json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n"
    return atomic_write(path, lambda p: p.write_text(text))


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()

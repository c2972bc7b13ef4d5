"""Checks shared by every loader and writer: whole numbers, finite numbers, and output paths.

Bad input must end in one :class:`DassEdgeError` line before any work starts, and no file dass-edge
writes (checkpoint, database row, JSON record) may hold NaN or infinity: they are not JSON, and a
model or row built from them is silently worthless.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import operator
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from dass_edge.errors import DassEdgeError

__all__ = ["whole", "finite", "finite_or_none", "non_finite_paths", "check_finite_record", "check_output_file",
           "check_output_dir"]


def whole(value: object, what: str) -> int:
    """``value`` as an int, refusing fractions, non-finite floats, bools and non-numbers (``8.7`` is not 8)."""
    if isinstance(value, bool):
        raise DassEdgeError(f"{what} must be a whole number, got {value!r}")
    try:
        return operator.index(value)  # int, numpy integers
    except TypeError:
        pass
    if isinstance(value, numbers.Real) and math.isfinite(value) and float(value).is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    raise DassEdgeError(f"{what} must be a whole number, got {value!r}")


def finite(value: object, what: str) -> float:
    """``value`` as a finite float (NaN and infinity are refused)."""
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        raise DassEdgeError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(out):
        raise DassEdgeError(f"{what} must be a finite number, got {value!r}")
    return out


def finite_or_none(value: float | None) -> float | None:
    """A measured figure for a record: NaN (e.g. the accuracy on an empty split) becomes ``None``."""
    return None if value is None or not math.isfinite(value) else value


def nan_to_none(obj: object) -> object:
    """A JSON-like tree with every non-finite float replaced by ``None``: for reports whose figures are
    undefined by design (a seed ceiling with too few seed pairs), not for results of a run that went wrong."""
    if isinstance(obj, float):
        return finite_or_none(obj)
    if isinstance(obj, dict):
        return {k: nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [nan_to_none(v) for v in obj]
    return obj


def non_finite_paths(obj: object, where: str = "") -> Iterator[str]:
    """Where a JSON-like tree holds a non-finite float (``a.b[2]``)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        yield where or "value"
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from non_finite_paths(v, f"{where}.{k}" if where else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from non_finite_paths(v, f"{where}[{i}]")


def check_finite_record(obj: object, what: str) -> None:
    """Refuse to write a record holding NaN/infinity (the run that produced it went wrong)."""
    bad = list(non_finite_paths(obj))
    if bad:
        more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
        raise DassEdgeError(f"refusing to write {what}: {bad[0]}{more} is not a finite number")


def check_output_dir(path: str | Path, what: str = "output folder") -> Path:
    """Check that folder ``path`` exists or can be created, and that files can be written in it.

    Probes by creating (and at once removing) what is missing plus a scratch file, so the answer holds
    even for root or on read-only and virtual file systems; nothing is left behind. A command calls it
    before it trains or measures, so a bad output fails first and leaves no empty folder.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise DassEdgeError(f"{what} {path} is a file, not a folder; choose another location")
    missing = []
    p = path.absolute()
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    if not p.is_dir():
        raise DassEdgeError(f"cannot create {what} {path}: {p} is a file; choose another location")
    made: list[Path] = []
    try:
        try:
            for d in reversed(missing):
                d.mkdir()
                made.append(d)
        except OSError as e:
            raise DassEdgeError(f"cannot create {what} {path}: {e.strerror or e}; choose another location") from None
        try:
            fd, scratch = tempfile.mkstemp(prefix=".dass-edge-probe-", dir=path)
            os.close(fd)
            os.unlink(scratch)
        except OSError as e:
            raise DassEdgeError(f"{what} {path} is not writable ({e.strerror or e}); choose another location") from None
    finally:
        for d in reversed(made):
            with contextlib.suppress(OSError):
                d.rmdir()
    return path


def check_output_file(path: str | Path, what: str = "output file", suffix: str | None = None) -> Path:
    """Check that file ``path`` could be written (its folder exists or could be made), creating nothing."""
    path = Path(path)
    if suffix is not None and path.suffix != suffix:
        raise DassEdgeError(f"{what} {path} must end in {suffix}")
    if path.is_dir():
        raise DassEdgeError(f"{what} {path} is a folder; give a file name")
    if path.exists() and not os.access(path, os.W_OK):
        raise DassEdgeError(f"{what} {path} is not writable; choose another location")
    check_output_dir(path.parent if str(path.parent) else Path("."))
    return path

"""Append-only JSONL storage: one line per row, written whole and fsync'd, so a kill loses at most the
line being written; a truncated last line is ignored on read and cut off before the next append."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from dass_edge.errors import DassEdgeError
from dass_edge.metadb.schema import row_key
from dass_edge.validate import check_finite_record, check_output_dir

__all__ = ["read_rows", "scan_rows", "append_row", "check_appendable"]


def scan_rows(path: str | Path) -> tuple[list[dict], int]:
    """All complete rows of a database (missing file: none) and how many corrupt lines were skipped.

    Later duplicates of a key are dropped; a half-written last line (a killed writer) is not counted as
    corrupt. A corrupt line in the middle is skipped, so one bad line does not cost a long build.

    Raises:
        DassEdgeError: the file is not UTF-8 text (not a JSONL database at all).
    """
    path = Path(path)
    if not path.is_file():
        return [], 0
    rows, seen, skipped = [], set(), 0
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if not line.endswith("\n"):
                    break  # the line a killed writer left half-written
                try:
                    row = json.loads(line)
                    key = row_key(row)
                except (json.JSONDecodeError, KeyError, TypeError):
                    skipped += bool(line.strip())
                    continue
                if key not in seen:
                    seen.add(key)
                    rows.append(row)
    except UnicodeDecodeError:
        raise DassEdgeError(f"{path} is not a dass-edge database (not UTF-8 text JSONL)") from None
    return rows, skipped


def read_rows(path: str | Path) -> list[dict]:
    """The complete rows of a database (see :func:`scan_rows`)."""
    return scan_rows(path)[0]


def check_appendable(path: str | Path) -> Path:
    """Raise a one-line error if rows cannot be appended to ``path`` (checked before any work starts)."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise DassEdgeError(f"database {path} is a folder; give a .jsonl file")
    if path.exists():
        if not os.access(path, os.W_OK):
            raise DassEdgeError(f"database {path} is not writable; choose another --out")
        rows, skipped = scan_rows(path)  # refuses a binary file
        if skipped and not rows:
            raise DassEdgeError(f"{path} holds no database rows ({skipped} other lines); give a .jsonl database "
                                "or a new file")
    else:
        check_output_dir(parent)
    return path


def append_row(path: str | Path, row: dict) -> None:
    """Append one row as one line, atomically with respect to kills (flush + fsync under a lock)."""
    check_finite_record(row, f"a row of {path}")
    line = json.dumps(row, sort_keys=True, separators=(",", ":"), allow_nan=False) + "\n"
    Path(path).parent.mkdir(parents=True, exist_ok=True)  # checked by check_appendable, made on first row
    with open(path, "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            if size:
                fh.seek(size - 1)
                if fh.read(1) != b"\n":  # a killed writer's partial line: cut it off
                    fh.seek(0)
                    data = fh.read()
                    fh.truncate(data.rfind(b"\n") + 1)
            fh.seek(0, os.SEEK_END)
            fh.write(line.encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)

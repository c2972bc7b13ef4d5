"""Append-only JSONL storage: one line per row, written whole and fsync'd, so a kill loses at most the
line being written; a truncated last line is ignored on read and cut off before the next append."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from dass_edge.errors import DassEdgeError
from dass_edge.io import ensure_writable_dir
from dass_edge.metadb.schema import row_key

__all__ = ["read_rows", "append_row", "check_appendable"]


def read_rows(path: str | Path) -> list[dict]:
    """All complete rows of a database (missing file: none). Later duplicates of a key are dropped."""
    path = Path(path)
    if not path.is_file():
        return []
    rows, seen = [], set()
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.endswith("\n"):
                break  # the line a killed writer left half-written
            try:
                row = json.loads(line)
                key = row_key(row)
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
            if key not in seen:
                seen.add(key)
                rows.append(row)
    return rows


def check_appendable(path: str | Path) -> Path:
    """Raise a one-line error if rows cannot be appended to ``path`` (checked before any work starts)."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise DassEdgeError(f"database {path} is a folder; give a .jsonl file")
    if path.exists():
        if not os.access(path, os.W_OK):
            raise DassEdgeError(f"database {path} is not writable; choose another --out")
    else:
        ensure_writable_dir(parent)
    return path


def append_row(path: str | Path, row: dict) -> None:
    """Append one row as one line, atomically with respect to kills (flush + fsync under a lock)."""
    line = json.dumps(row, sort_keys=True, separators=(",", ":")) + "\n"
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

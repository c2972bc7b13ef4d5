"""Several databases read as one: the shipped v1 rows plus the v2 rows kept beside them.

``meta eval`` and ``meta train`` take ``--db`` more than once (``--db shipped --db metadb/metadb_v2.jsonl``).
Each task must come from one database: a task name in two of them would merge two teachers' students
into one meta-task, so it is refused, as is the same file given twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dass_edge.errors import DassEdgeError
from dass_edge.io import file_sha256

__all__ = ["SHIPPED", "CombinedDB", "combine_dbs", "resolve_db_paths"]

#: ``--db shipped`` names the database installed with dass-edge.
SHIPPED = "shipped"


def _shipped_path() -> Path:
    from dass_edge.resources import asset_path

    return asset_path("metadb.jsonl")


def resolve_db_paths(dbs: Sequence[str | Path] | None) -> list[Path]:
    """``--db`` values as paths: none means the shipped database; ``shipped`` names it among others.

    Raises:
        DassEdgeError: the same file is given twice.
    """
    paths = [_shipped_path() if str(d) == SHIPPED else Path(d) for d in (dbs or [SHIPPED])]
    seen: dict[Path, Path] = {}
    for p in paths:
        key = p.resolve()
        if key in seen:
            raise DassEdgeError(f"database {p} is given twice (as {seen[key]} too)")
        seen[key] = p
    return paths


@dataclass
class CombinedDB:
    """The rows of several databases, with where each task came from."""

    rows: list[dict]
    sources: list[dict]  # per file: path, file, sha256, rows, tasks
    task_source: dict[str, str] = field(default_factory=dict)  # task -> database path

    @property
    def paths(self) -> list[Path]:
        return [Path(s["path"]) for s in self.sources]

    def provenance(self) -> dict:
        """``file`` and ``sha256`` of a predictor's ``db`` record for these databases (one file: its own;
        several: the names joined by `` + `` and a digest of their checksums), and ``sources``."""
        if len(self.sources) == 1:
            s = self.sources[0]
            return {"file": s["file"], "sha256": s["sha256"], "sources": [self._brief(s)]}
        digest = hashlib.sha256("\n".join(s["sha256"] for s in self.sources).encode()).hexdigest()
        return {"file": " + ".join(s["file"] for s in self.sources), "sha256": digest,
                "sources": [self._brief(s) for s in self.sources]}

    @staticmethod
    def _brief(s: dict) -> dict:
        return {k: s[k] for k in ("file", "sha256", "rows", "tasks")}


def combine_dbs(paths: Sequence[Path]) -> CombinedDB:
    """Read every database in ``paths`` (order kept) and join their rows.

    Raises:
        DassEdgeError: a file is missing or holds no complete rows, or a task appears in two of them.
    """
    from dass_edge.metadb.store import read_rows

    rows: list[dict] = []
    sources: list[dict] = []
    task_source: dict[str, str] = {}
    for path in paths:
        if not path.is_file():
            raise DassEdgeError(f"no database at {path}; build one with 'dass-edge meta build-db'")
        mine = read_rows(path)
        if not mine:
            raise DassEdgeError(f"{path} holds no complete rows")
        tasks = sorted({r["task"] for r in mine})
        clash = [t for t in tasks if t in task_source]
        if clash:
            raise DassEdgeError(f"task {clash[0]} is in both {task_source[clash[0]]} and {path}; a task must come "
                                "from one database")
        task_source.update(dict.fromkeys(tasks, str(path)))
        sources.append({"path": str(path), "file": path.name, "sha256": file_sha256(path), "rows": len(mine),
                        "tasks": tasks})
        rows.extend(mine)
    return CombinedDB(rows, sources, task_source)

"""The meta-training database: tasks × students → accuracy after KD, one JSONL row per run.

``store`` reads and appends rows (append-only, one fsync'd line per run), ``schema`` says what a row
holds and what identifies it, ``sampling`` picks the students of a task, ``jobs`` runs one teacher or
one KD run, ``engines`` runs jobs on a local process pool or Ray, ``builder`` plans and resumes a
build, and ``info`` summarizes a database (size, held-out tasks, label noise).
"""

from __future__ import annotations

from dass_edge.metadb.info import db_info
from dass_edge.metadb.schema import SCHEMA_VERSION, row_key
from dass_edge.metadb.store import append_row, read_rows, scan_rows

__all__ = ["SCHEMA_VERSION", "append_row", "db_info", "read_rows", "row_key", "scan_rows"]

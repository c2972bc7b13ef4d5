"""What a database row holds and what identifies it.

A row is one KD run. Its identity — the de-duplication key of a resumed build — is (task, teacher
checksum, student arch, seed, recipe hash); everything else (accuracies, timings, versions) is what
that run measured.

Why the key holds the teacher *file's* checksum and not a checksum of its weights (decided, issue 16):
the file's metadata records timings, so two builds of the same teacher give different keys. That is
accepted. A key names the exact file the labels were distilled from, which ships beside the database
and is checked against it before a job runs (``kd_job``); the teacher-output cache is keyed the same
way. Keying on the weights instead would re-key, and so orphan, the 803 rows shipped in
``dass_edge/assets/metadb.jsonl``, for no gain: a retrained teacher is a new teacher (new labels).
"""

from __future__ import annotations

__all__ = ["SCHEMA_VERSION", "KEY_FIELDS", "MEASURED_FIELDS", "row_key"]

SCHEMA_VERSION = 1
KEY_FIELDS = ("task", "teacher_sha256", "arch_key", "seed", "recipe_hash")
#: Fields that differ between two executions of the same run (machine load, host): left out when
#: comparing rows from two engines.
MEASURED_FIELDS = ("seconds", "images_per_second", "host", "finished_at", "engine", "cache_hit")


def row_key(row: dict) -> tuple:
    """The identity of a run: rows with equal keys are the same run."""
    return tuple(row[k] for k in KEY_FIELDS)

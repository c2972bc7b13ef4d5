"""What a database row holds and what identifies it.

A row is one KD run. Its identity — the de-duplication key of a resumed build — is (task, teacher
checksum, student arch, seed, recipe hash); everything else (accuracies, timings, versions) is what
that run measured.
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

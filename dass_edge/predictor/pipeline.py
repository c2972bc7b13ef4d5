"""``meta train`` and ``meta eval`` as library calls: database → meta-tasks → ensemble → held-out report.

Held-out tasks never reach meta-training; the held-out report stored with a trained predictor is
computed after training and is not used to choose anything.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from dass_edge import __version__
from dass_edge.errors import DassEdgeError
from dass_edge.io import file_sha256
from dass_edge.predictor.meta_tasks import MetaTask, load_meta_tasks
from dass_edge.predictor.model import DaSSPredictor
from dass_edge.predictor.training import TrainConfig, meta_train

__all__ = ["default_db_path", "resolve_teachers_dir", "load_db", "train_ensemble", "fit_hybrid", "predictor_metadata"]

#: The shipped predictor v2's settings (``meta train --model hybrid``), chosen by 5-fold cross-validation over
#: the meta-training tasks of v1 + v2 and, for the map and single-block terms, by a look at two meta-training tasks
#: no fit had seen, ruled before their rows (BENCHMARKS.md, "cross-validation on the budgeted metrics", session 26).
HYBRID_DEFAULTS = {"alpha": 100.0, "probe": True, "probe_size": True, "residual_steps": 0,
                   "descriptors": ("stem", "map"), "single_blocks": True}

#: ``progress(event, info)``: events ``loading``, ``member`` (index, total), ``step`` (step, steps, loss).
ProgressFn = Callable[[str, dict], None]


def default_db_path() -> Path:
    from dass_edge.resources import asset_path

    return asset_path("metadb.jsonl")


def resolve_teachers_dir(db: Path, teachers: Path | None) -> Path:
    """Where the database's teachers are: ``teachers`` if given, else ``teachers/`` beside the database,
    else the source checkout's ``metadb/teachers`` (the shipped database's teachers are not in the wheel)."""
    if teachers is not None:
        if not teachers.is_dir():
            raise DassEdgeError(f"teacher folder {teachers} does not exist")
        return teachers
    candidates = [db.parent / "teachers", Path(__file__).resolve().parents[2] / "metadb" / "teachers",
                  Path.cwd() / "metadb" / "teachers"]
    for c in candidates:
        if c.is_dir():
            return c
    raise DassEdgeError(f"the teachers of {db} are not here; pass --teachers DIR (a source checkout of dass-edge "
                        "has them in metadb/teachers)")


def load_db(db: Path, teachers_dir: Path) -> tuple[list[dict], list[MetaTask]]:
    """Rows and their meta-tasks (every student embedded; ~30 s for the shipped database)."""
    from dass_edge.metadb.store import read_rows

    if not db.is_file():
        raise DassEdgeError(f"no database at {db}; build one with 'dass-edge meta build-db'")
    rows = read_rows(db)
    if not rows:
        raise DassEdgeError(f"{db} holds no complete rows")
    return rows, load_meta_tasks(rows, teachers_dir)


def train_ensemble(tasks: list[MetaTask], cfg: TrainConfig, members: int,
                   progress: ProgressFn | None = None) -> list[DaSSPredictor]:
    """``members`` predictors meta-trained on the non-held-out tasks, seeds ``cfg.seed + i``."""
    train = [t for t in tasks if not t.heldout]
    if len(train) < 2:
        raise DassEdgeError(f"meta-training needs at least 2 non-held-out tasks; the database has {len(train)}")
    if members < 1:
        raise DassEdgeError(f"--members must be >= 1, got {members}")
    models = []
    for i in range(members):
        if progress:
            progress("member", {"index": i, "total": members})

        def step(s: int, total: int, loss: float, i: int = i) -> None:
            if progress:
                progress("step", {"member": i, "step": s, "steps": total, "loss": loss})

        model, _ = meta_train(train, replace(cfg, seed=cfg.seed + i), step)
        models.append(model)
    return models


def fit_hybrid(tasks: list[MetaTask], **settings) -> list:
    """One :class:`HybridPredictor` (closed form, so one member) fitted on the non-held-out tasks."""
    from dass_edge.predictor.hybrid import HybridPredictor

    train = [t for t in tasks if not t.heldout]
    if len(train) < 2:
        raise DassEdgeError(f"meta-training needs at least 2 non-held-out tasks; the database has {len(train)}")
    return [HybridPredictor(**{**HYBRID_DEFAULTS, **settings}).fit(train)]


def predictor_metadata(db: Path, rows: list[dict], tasks: list[MetaTask], cfg: TrainConfig | dict, seconds: float,
                       heldout: dict | None, calibration: dict | None = None) -> dict:
    """Provenance stored with a predictor: what it learned from, how, and how it did on held-out tasks."""
    keys = sorted("|".join(map(str, (r["task"], r["arch_key"], r["seed"]))) for r in rows)
    return {
        "dass_edge_version": __version__,
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "train_seconds": round(seconds, 1),
        "train": cfg.to_dict() if isinstance(cfg, TrainConfig) else dict(cfg),
        "db": {"file": db.name, "sha256": file_sha256(db), "rows": len(rows),
               "rows_digest": hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16],
               "train_tasks": [t.name for t in tasks if not t.heldout],
               "heldout_tasks": [t.name for t in tasks if t.heldout]},
        "heldout": heldout,
        "calibration": calibration,
    }

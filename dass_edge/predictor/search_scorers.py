"""The scorer ``search`` ranks students with: the DaSS predictor, or a registered baseline in its place.

``search --predictor`` takes a predictor FILE or a baseline key (``flops``, ``synflow``, ``ridge``,
``diswot``, ...), so a user and the benchmarks can run the same evolution, the same latency table and
the same budget with a proxy instead of DaSS. A baseline's score is its own quantity (FLOPs, a proxy,
a standardized accuracy), not an accuracy in percent: only its order drives the search.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from dass_edge.data.task import TaskData
from dass_edge.errors import DassEdgeError
from dass_edge.models.resnet import ResNet
from dass_edge.predictor.baselines import (
    Baseline,
    context_from_split,
    create_baseline,
    is_baseline,
    list_baselines,
)
from dass_edge.predictor.meta_tasks import MetaTask, unlabelled_task
from dass_edge.predictor.support import SupportStudent
from dass_edge.space import Arch

__all__ = ["BaselineScorer", "candidate_task", "check_predictor", "load_search_scorer"]


def candidate_task(name: str, archs: Sequence[Arch], teacher: ResNet) -> MetaTask:
    """Unlabelled students of ``teacher`` as a :class:`MetaTask` (codes, sizes, spec; no embeddings)."""
    return unlabelled_task(name, list(archs), teacher.spec)


class BaselineScorer:
    """``scorer(archs) -> scores`` from a fitted baseline (higher = better; non-finite scores rank last)."""

    def __init__(self, baseline: Baseline, teacher: ResNet, data: TaskData, fitted_on: list[str]) -> None:
        self.baseline, self.teacher, self.name = baseline, teacher.eval(), data.name
        self.context = context_from_split(data.name, data.train, self.teacher) if baseline.needs_context else None
        self.info = {"baseline": baseline.name, "fitted_on": fitted_on,
                     "score": "the baseline's own score (higher = better), not an accuracy"}
        self.seconds = 0.0
        self.scored = 0

    def __call__(self, archs: Sequence[Arch]) -> np.ndarray:
        if not archs:
            return np.zeros(0)
        t0 = time.perf_counter()
        scores = np.asarray(self.baseline.score(candidate_task(self.name, archs, self.teacher), self.context),
                            dtype=np.float64)
        self.seconds += time.perf_counter() - t0
        self.scored += len(archs)
        # The search needs finite values; a proxy that overflowed or failed ranks last, as in meta eval.
        return np.where(np.isfinite(scores), scores, np.where(scores > 0, np.finfo(float).max, -np.finfo(float).max))


def _fit_tasks(db: Path | None, teachers: Path | None, skip: str) -> list[MetaTask]:
    """The database's meta-training tasks (without embeddings), minus the task being searched."""
    from dass_edge.metadb.store import read_rows
    from dass_edge.predictor.meta_tasks import load_meta_tasks
    from dass_edge.predictor.pipeline import default_db_path, resolve_teachers_dir

    path = db or default_db_path()
    if not path.is_file():
        raise DassEdgeError(f"no meta-database at {path} to fit the baseline on")
    rows = [r for r in read_rows(path) if not r.get("heldout") and r["task"] != skip]
    if not rows:
        raise DassEdgeError(f"{path} holds no meta-training task to fit the baseline on")
    return load_meta_tasks(rows, resolve_teachers_dir(path, teachers), embed_students=False)


def check_predictor(predictor: str | Path | None, support: bool = False) -> None:
    """Fail early (before any profiling) on a ``--predictor`` that is neither a baseline key nor a file, or a
    baseline given with support students (``support``: some were given), which it cannot adapt to.

    Raises:
        DassEdgeError: the message lists the baseline keys.
    """
    if support and predictor is not None and is_baseline(str(predictor)):
        raise DassEdgeError(f"--support adapts the DaSS predictor; baseline {predictor} has nothing to adapt")
    if predictor is None or is_baseline(str(predictor)) or Path(predictor).is_file():
        return
    raise DassEdgeError(f"--predictor {predictor} is neither a predictor file nor a baseline key; "
                        f"baselines: {', '.join(list_baselines())}")


def load_search_scorer(predictor: str | Path | None, teacher: ResNet, data: TaskData, teacher_meta: dict | None = None,
                       db: Path | None = None, teachers: Path | None = None,
                       progress: Callable[[str], None] | None = None, support: Sequence[SupportStudent] = ()):
    """The DaSS scorer for a predictor file (``None``: the shipped one), or a baseline's for a registered key.

    Learned baselines (``ridge``, ``arch_only``, ``metad2a``) are fitted first on the meta-training tasks
    of ``db`` (default: the shipped database), never on the task being searched. ``support``: students of
    this task already distilled, which the hybrid predictor adapts to (K-shot).

    Raises:
        DassEdgeError: neither a baseline key nor an existing file (the message lists the keys), or support
            students with a predictor that cannot use them.
    """
    check_predictor(predictor, bool(support))
    if predictor is not None and is_baseline(str(predictor)):
        b = create_baseline(str(predictor))
        fitted_on: list[str] = []
        if b.trainable:
            if progress:
                progress(f"fitting baseline {predictor}")
            tasks = _fit_tasks(db, teachers, data.name)
            b.fit(tasks)
            fitted_on = [t.name for t in tasks]
        return BaselineScorer(b, teacher, data, fitted_on)
    from dass_edge.predictor.scoring import load_scorer

    return load_scorer(teacher, data, Path(predictor) if predictor is not None else None, teacher_meta=teacher_meta,
                       progress=progress, support=support)

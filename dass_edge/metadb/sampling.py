"""Which students of a task get trained: seeded, and spread from the smallest to the largest.

Uniform sampling of depths and widths piles students up at middle sizes. Instead, draw a large
seeded pool (plus the smallest student and the teacher's own shape), then pick, for targets evenly
spaced in log-parameters, the pool member closest to each target; the shape at a given size stays
random.
"""

from __future__ import annotations

import math
import zlib

from dass_edge.space import Arch, SearchSpace

__all__ = ["sample_students", "task_seed"]


def task_seed(task: str, seed: int) -> int:
    """A per-task sampling seed, so tasks do not all get the same students."""
    return zlib.crc32(f"{task}/{seed}".encode())


def sample_students(space: SearchSpace, n: int, seed: int, pool_size: int = 4000) -> list[Arch]:
    """``n`` distinct students covering the space's parameter range (deterministic in ``seed``).

    The order is by ascending size of the targets, interleaved (small, large, middle, ...) so that a
    partly built task already spans the range.
    """
    pool = {space.smallest_arch(), space.teacher_arch()}
    pool.update(space.sample_many(min(pool_size, max(1, space.size() - 2)), seed=seed))
    ranked = sorted(pool, key=lambda a: (space.params(a), a.key()))
    n = min(n, len(ranked))
    logp = [math.log(space.params(a)) for a in ranked]
    lo, hi = logp[0], logp[-1]
    chosen: list[Arch] = []
    used: set[int] = set()
    for i in range(n):
        target = lo + (hi - lo) * (i / (n - 1) if n > 1 else 0.0)
        best = min((j for j in range(len(ranked)) if j not in used), key=lambda j: (abs(logp[j] - target), j))
        used.add(best)
        chosen.append(ranked[best])
    return [chosen[i] for i in _interleave(len(chosen))]


def _interleave(n: int) -> list[int]:
    """0, n-1, then midpoints of ever finer halves: a prefix of any length spans the range."""
    if n <= 2:
        return list(range(n))
    order, seen = [0, n - 1], {0, n - 1}
    step = n - 1
    while len(order) < n:
        step = max(1, step // 2)
        for k in range(0, n, step):
            if k not in seen:
                seen.add(k)
                order.append(k)
    return order

"""Which students of a task get trained: seeded, and spread from the smallest to the largest.

Uniform sampling of depths and widths piles students up at middle sizes. Instead, draw a large
seeded pool (plus the smallest student and the teacher's own shape), then pick, for targets evenly
spaced in log-parameters, the pool member closest to each target; the shape at a given size stays
random.
"""

from __future__ import annotations

import math
import random
import zlib

from dass_edge.space import Arch, SearchSpace

__all__ = ["band_centers", "sample_band_students", "sample_students", "shape_descriptor", "task_seed"]


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


# --- band sampling (v2): students of near-equal cost and different shapes ---------------------------
def shape_descriptor(space: SearchSpace, arch: Arch) -> list[float]:
    """Where a student puts its capacity: relative depth and mean relative width per stage, and each
    stage's share of the block FLOPs. Two students of equal FLOPs differ here (deep-narrow vs shallow-wide,
    early vs late capacity)."""
    from dass_edge.space import block_macs
    from dass_edge.spec import block_layout

    spec = space.to_spec(arch)
    depths = [d / m for d, m in zip(arch.depths, space.max_depths)]
    widths = [sum(ws) / len(ws) / space.teacher.widths[s] for s, ws in enumerate(arch.widths)]
    stage_of = [s for s, d in enumerate(arch.depths) for _ in range(d)]
    macs = [0.0] * len(arch.depths)
    for s, block in zip(stage_of, block_layout(spec)):
        macs[s] += block_macs(*block)
    total = sum(macs) or 1.0
    return depths + widths + [m / total for m in macs]


def band_centers(space: SearchSpace, bands: int) -> list[float]:
    """``bands`` FLOPs targets spread evenly in log-FLOPs strictly between the smallest student and the
    teacher (the extremes themselves have no equal-cost alternatives)."""
    lo = math.log(space.flops(space.smallest_arch()))
    hi = math.log(space.flops(space.teacher_arch()))
    return [math.exp(lo + (hi - lo) * (b + 0.5) / bands) for b in range(bands)]


def _band_members(space: SearchSpace, pool: set[Arch], center: float, tol: float, want: int,
                  rng: random.Random) -> list[Arch]:
    """Pool members within ``tol`` of ``center``; if fewer than ``want``, random walks (mutations) from the
    nearest ones collect more, so that bands near the extremes are filled too."""
    inside = {a for a in pool if abs(space.flops(a) / center - 1) <= tol}
    if len(inside) >= want:
        return sorted(inside, key=Arch.key)
    seeds = sorted(pool, key=lambda a: (abs(math.log(space.flops(a) / center)), a.key()))[:50]
    for step in range(20000):
        if len(inside) >= want:
            break
        a = space.mutate(rng.choice(seeds), rng, prob=0.3)
        if a in inside:
            continue
        rel = space.flops(a) / center - 1
        if abs(rel) <= tol:
            inside.add(a)
            seeds.append(a)
        elif step % 4 == 0 and abs(rel) < 0.5:
            seeds.append(a)
    return sorted(inside, key=Arch.key)


def _farthest_first(descs: list[list[float]], k: int, start: int) -> list[int]:
    chosen = [start]
    dist = [math.dist(d, descs[start]) for d in descs]
    while len(chosen) < min(k, len(descs)):
        nxt = max(range(len(descs)), key=lambda i: (dist[i], -i))
        chosen.append(nxt)
        dist = [min(a, math.dist(d, descs[nxt])) for a, d in zip(dist, descs)]
    return chosen


def sample_band_students(space: SearchSpace, bands: int, per_band: int, seed: int, tol: float = 0.05,
                         pool_size: int = 6000) -> list[tuple[int, Arch]]:
    """``per_band`` students in each of ``bands`` bands of near-equal FLOPs (within ``tol``), as
    ``(band, arch)`` pairs; deterministic in ``seed``.

    Inside a band the students are picked farthest-first in :func:`shape_descriptor` (starting from the
    member nearest the band's center), so they are as different in shape as the band allows. Order: band
    by band in an interleaved band order (0, last, middle, ...), each band complete before the next, so a
    partly built task already has whole bands to measure label quality inside.
    """
    if bands < 1 or per_band < 1 or not 0 < tol < 1:
        raise ValueError("bands and per_band must be >= 1 and tol in (0, 1)")
    rng = random.Random(seed)
    pool = set(space.sample_many(min(pool_size, max(1, space.size() - 2)), seed=seed))
    centers = band_centers(space, bands)
    out: list[tuple[int, Arch]] = []
    taken: set[Arch] = set()
    for b in _interleave(bands):
        members = [a for a in _band_members(space, pool, centers[b], tol, 4 * per_band, rng) if a not in taken]
        if not members:
            continue
        descs = [shape_descriptor(space, a) for a in members]
        start = min(range(len(members)), key=lambda i: (abs(math.log(space.flops(members[i]) / centers[b])), i))
        for i in _farthest_first(descs, per_band, start):
            taken.add(members[i])
            out.append((b, members[i]))
    return out

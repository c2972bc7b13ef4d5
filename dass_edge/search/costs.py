"""What a search reads per student, each computed once: latency (p50, p90) from the device's table and size
(params, FLOPs) from the cost model. The algorithms ask for thousands of students per second."""

from __future__ import annotations

import math
from collections.abc import Callable

from dass_edge.latency.table import LatencyTable
from dass_edge.space import Arch, SearchSpace, spec_flops, spec_params
from dass_edge.spec import ModelSpec

__all__ = ["Costs"]


class _Shape:
    """The fields of a student's :class:`ModelSpec` that the cost model reads (``block_layout``,
    ``spec_keys``, ``spec_params``, ``spec_flops``), without a spec's validation: archs made by the
    space are valid by construction, and the search costs thousands of them per second.
    ``tests/test_search_run.py`` checks the numbers against real specs."""

    __slots__ = ("stages", "stem", "stem_width", "resolution", "in_chans", "num_classes", "feature_width")

    def __init__(self, teacher: ModelSpec, arch: Arch) -> None:
        self.stages, self.stem_width, self.feature_width = arch.widths, arch.widths[0][0], arch.widths[-1][-1]
        self.stem, self.resolution, self.in_chans = teacher.stem, teacher.resolution, teacher.in_chans
        self.num_classes = teacher.num_classes


class Costs:
    """Latency (p50, p90) and size (params, FLOPs) per arch, each computed once.

    The caches are cleared when they grow large: random sampling under a tight budget tries
    millions of distinct students and only evolution revisits them.
    """

    MAX_CACHED = 200_000

    def __init__(self, space: SearchSpace, table: LatencyTable) -> None:
        self.space, self.table = space, table
        self._teacher: ModelSpec = space.teacher
        self._latency: dict[Arch, tuple[float, float]] = {}
        self._size: dict[Arch, tuple[int, int]] = {}

    def latencies(self, arch: Arch) -> tuple[float, float]:
        """``(p50_ms, p90_ms)`` from the table (corrected)."""
        c = self._latency.get(arch)
        if c is None:
            if len(self._latency) >= self.MAX_CACHED:
                self._latency.clear()
            pred = self.table.predict(_Shape(self._teacher, arch))  # type: ignore[arg-type]
            c = self._latency[arch] = (pred["p50_ms"], pred["p90_ms"])
        return c

    def latency(self, arch: Arch) -> float:
        return self.latencies(arch)[0]

    def size(self, arch: Arch) -> tuple[int, int]:
        """``(params, flops)``."""
        c = self._size.get(arch)
        if c is None:
            if len(self._size) >= self.MAX_CACHED:
                self._size.clear()
            shape = _Shape(self._teacher, arch)
            c = self._size[arch] = (spec_params(shape), spec_flops(shape))  # type: ignore[arg-type]
        return c

    def get(self, arch: Arch) -> tuple[float, float, int, int]:
        """``(p50_ms, p90_ms, params, flops)``."""
        return (*self.latencies(arch), *self.size(arch))

    def constrained(self, budget_ms: float, params_max: int | None) -> Callable[[Arch], float]:
        """The latency the algorithms constrain on: infinite for students over ``params_max``, so
        sampling and mutation never hand those to the scorer."""
        if params_max is None:
            return self.latency

        def latency(arch: Arch) -> float:
            ms = self.latency(arch)
            if ms > budget_ms:
                return ms  # out anyway: skip the size
            return ms if self.size(arch)[0] <= params_max else math.inf

        return latency

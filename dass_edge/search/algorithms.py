"""Search algorithms over a :class:`SearchSpace` under a latency budget, registered by key.

Every algorithm gets the same two callables — ``score(archs) -> accuracies`` (batched, so the
predictor can embed many students at once) and ``latency(arch) -> ms`` (a table lookup) — and
returns every distinct candidate it scored, so the caller can draw the Pareto front and pick the
top-k. Candidates over the budget are never scored: sampling, mutation and crossover retry a few
times (as in OFA's evolutionary search), then shrink the last draw until it fits (:func:`shrink`), so
a budget close to the fastest student costs a few table lookups per student, not thousands of
rejected draws.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from dass_edge.errors import DassEdgeError
from dass_edge.space import Arch, SearchSpace

__all__ = ["ALGORITHMS", "DEFAULT_BUDGET_EVALS", "Candidate", "SearchLog", "run_algorithm", "shrink"]

ScoreFn = Callable[[Sequence[Arch]], Sequence[float]]
LatencyFn = Callable[[Arch], float]


@dataclass(frozen=True)
class Candidate:
    arch: Arch
    score: float
    latency_ms: float


@dataclass
class SearchLog:
    """All distinct scored candidates, in the order they were first scored."""

    candidates: dict[Arch, Candidate] = field(default_factory=dict)

    def score_new(self, archs: Sequence[Arch], score: ScoreFn, latency: LatencyFn) -> list[Candidate]:
        fresh = list(dict.fromkeys(a for a in archs if a not in self.candidates))
        if fresh:
            for a, s in zip(fresh, score(fresh), strict=True):
                self.candidates[a] = Candidate(a, float(s), float(latency(a)))
        return [self.candidates[a] for a in archs]


def shrink(space: SearchSpace, arch: Arch, rng: random.Random) -> Arch | None:
    """One random step down: drop one block of a stage deeper than 1, or narrow one block to a smaller width
    of its stage; ``None`` for the smallest student. Repeated, it reaches the smallest student."""
    moves = []
    for s, (d, ws) in enumerate(zip(arch.depths, arch.widths)):
        lowest = space.width_options[s][0]
        moves += [("drop", s, b) for b in range(d) if d > 1]
        moves += [("narrow", s, b) for b, w in enumerate(ws) if w > lowest]
    if not moves:
        return None
    kind, s, b = rng.choice(moves)
    widths = [list(ws) for ws in arch.widths]
    if kind == "drop":
        del widths[s][b]
    else:
        widths[s][b] = rng.choice([w for w in space.width_options[s] if w < widths[s][b]])
    return Arch(tuple(len(ws) for ws in widths), tuple(tuple(ws) for ws in widths))


class _Feasible:
    """Draws students under the budget: ``tries`` draws, then the last one shrunk until it fits.

    The retries keep a loose budget's draws (nearly) uniform over the feasible students; shrinking makes a
    tight budget as cheap as a loose one (it lands just under the budget, where the best students are).
    """

    def __init__(self, space: SearchSpace, latency: LatencyFn, budget_ms: float, rng: random.Random,
                 tries: int = 10) -> None:
        self.space, self.latency, self.budget, self.rng, self.tries = space, latency, budget_ms, rng, tries

    def fit(self, arch: Arch) -> Arch | None:
        """``arch``, shrunk step by step until it meets the budget; ``None`` if even the smallest does not."""
        a: Arch | None = arch
        while a is not None and self.latency(a) > self.budget:
            a = shrink(self.space, a, self.rng)
        return a

    def _draw(self, make: Callable[[], Arch]) -> Arch | None:
        a = make()
        for _ in range(self.tries - 1):
            if self.latency(a) <= self.budget:
                return a
            a = make()
        return self.fit(a)

    def sample(self) -> Arch | None:
        return self._draw(lambda: self.space.sample(self.rng))

    def mutate(self, parent: Arch, prob: float) -> Arch:
        return self._draw(lambda: self.space.mutate(parent, self.rng, prob)) or parent

    def crossover(self, a: Arch, b: Arch) -> Arch:
        return self._draw(lambda: self.space.crossover(a, b, self.rng)) or a


def _initial(feasible: _Feasible, n: int) -> list[Arch]:
    pop = [a for a in (feasible.sample() for _ in range(n)) if a is not None]
    smallest = feasible.space.smallest_arch()
    if not pop and feasible.latency(smallest) <= feasible.budget:
        pop = [smallest]  # a tight budget that random draws rarely meet
    return pop


def evolution(space: SearchSpace, score: ScoreFn, latency: LatencyFn, budget_ms: float, evals: int,
              rng: random.Random, population: int = 100, parents_ratio: float = 0.25, mutation_ratio: float = 0.5,
              mutate_prob: float = 0.3) -> SearchLog:
    """OFA-style evolution: keep the best ``parents_ratio``, refill by mutation and crossover.

    ``mutate_prob`` is per gene; our students have ~14 genes (OFA's have ~45), so 0.3 where OFA uses 0.1:
    with 0.1 most children repeat a scored student and the search stalls before its budget.
    """
    log = SearchLog()
    feasible = _Feasible(space, latency, budget_ms, rng)
    pop = log.score_new(_initial(feasible, population), score, latency)
    n_parents = max(1, int(population * parents_ratio))
    stalled = 0
    while len(log.candidates) < evals and pop:
        parents = sorted(pop, key=lambda c: -c.score)[:n_parents]
        children: list[Arch] = []
        n_mut = int(population * mutation_ratio)
        for _ in range(n_mut):
            children.append(feasible.mutate(rng.choice(parents).arch, mutate_prob))
        for _ in range(population - n_parents - n_mut):
            children.append(feasible.crossover(rng.choice(parents).arch, rng.choice(parents).arch))
        before = len(log.candidates)
        new = log.score_new(children, score, latency)
        if len(log.candidates) - before < len(children) // 10:
            # Converging: the children mostly repeat scored students (a tight budget leaves parents few
            # feasible neighbours). Random feasible immigrants keep the search exploring.
            immigrants = [a for a in (feasible.sample() for _ in range(population - n_parents)) if a is not None]
            new += log.score_new(immigrants[: max(0, evals - len(log.candidates))], score, latency)
        pop = parents + new
        stalled = stalled + 1 if len(log.candidates) == before else 0
        if stalled >= 20:  # the feasible region is exhausted
            break
    return log


def random_search(space: SearchSpace, score: ScoreFn, latency: LatencyFn, budget_ms: float, evals: int,
                  rng: random.Random, batch: int = 256) -> SearchLog:
    log = SearchLog()
    feasible = _Feasible(space, latency, budget_ms, rng)
    misses = 0
    while len(log.candidates) < evals and misses < 20:
        drawn = [a for a in (feasible.sample() for _ in range(min(batch, evals - len(log.candidates)))) if a]
        before = len(log.candidates)
        log.score_new(drawn, score, latency)
        misses = misses + 1 if len(log.candidates) == before else 0
    return log


def enumerate_space(space: SearchSpace) -> itertools.chain:
    """Every student of the space, in a fixed order."""
    per_stage = []
    for d_max, opts in zip(space.max_depths, space.width_options):
        per_stage.append([(d, ws) for d in range(1, d_max + 1) for ws in itertools.product(opts, repeat=d)])
    for combo in itertools.product(*per_stage):
        yield Arch(tuple(d for d, _ in combo), tuple(ws for _, ws in combo))


def exhaustive(space: SearchSpace, score: ScoreFn, latency: LatencyFn, budget_ms: float, evals: int,
               rng: random.Random, batch: int = 1024, max_size: int = 2_000_000) -> SearchLog:
    """Score every student under the budget (``evals`` is ignored); for small spaces and checks."""
    if space.size() > max_size:
        raise DassEdgeError(f"the space has {space.size():,} students; exhaustive search is limited to {max_size:,}")
    log = SearchLog()
    chunk: list[Arch] = []
    for a in enumerate_space(space):
        if latency(a) <= budget_ms:
            chunk.append(a)
        if len(chunk) >= batch:
            log.score_new(chunk, score, latency)
            chunk = []
    log.score_new(chunk, score, latency)
    return log


#: Distinct students a search scores by default: enough for evolution to reach its objective's optimum in 11 of the
#: 14 head-to-head settings (300 reached it in 1; BENCHMARKS.md, session 25), about a second with the hybrid predictor.
DEFAULT_BUDGET_EVALS = 2000

ALGORITHMS: dict[str, Callable[..., SearchLog]] = {
    "evolution": evolution, "random": random_search, "exhaustive": exhaustive,
}


def run_algorithm(name: str, space: SearchSpace, score: ScoreFn, latency: LatencyFn, budget_ms: float,
                  evals: int = DEFAULT_BUDGET_EVALS, seed: int = 0) -> SearchLog:
    if name not in ALGORITHMS:
        raise DassEdgeError(f"unknown search algorithm {name!r}; choose one of {', '.join(ALGORITHMS)}")
    if evals < 1:
        raise DassEdgeError(f"--budget-evals must be >= 1, got {evals}")
    return ALGORITHMS[name](space, score, latency, budget_ms, evals, random.Random(seed))

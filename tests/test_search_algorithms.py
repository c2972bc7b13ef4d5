import pytest

from dass_edge.errors import DassEdgeError
from dass_edge.models import model_spec
from dass_edge.search.algorithms import ALGORITHMS, enumerate_space, run_algorithm
from dass_edge.search.pareto import pareto_front
from dass_edge.space import SearchSpace, spec_flops


@pytest.fixture(scope="module")
def tiny_space():
    # Depth <= 1 per stage, fixed last stage: 9 * 9 * 9 = 729 students, exhaustively checkable.
    return SearchSpace(model_spec("resnet_edge_s", num_classes=10).replace(stages=[[16], [32], [64], [128]]))


def _flops_latency(space):
    return lambda a: spec_flops(space.to_spec(a)) / 1e6  # a deterministic stand-in for a LUT (MFLOPs)


def _score(space):
    # A known objective with an interior optimum: favors width in stage 2, penalizes stage-1 width.
    def score(archs):
        return [a.widths[1][0] - 0.5 * a.widths[0][0] + 0.1 * a.widths[2][0] for a in archs]

    return score


def test_enumerate_space_matches_size(tiny_space):
    archs = list(enumerate_space(tiny_space))
    assert len(archs) == tiny_space.size() == 729 and len(set(archs)) == 729


@pytest.mark.parametrize("algo", list(ALGORITHMS))  # every registered algorithm, without editing this test
def test_every_candidate_respects_budget(tiny_space, algo):
    latency = _flops_latency(tiny_space)
    budget = 14.0
    log = run_algorithm(algo, tiny_space, _score(tiny_space), latency, budget, evals=300, seed=0)
    assert log.candidates
    assert all(c.latency_ms <= budget for c in log.candidates.values())
    assert all(latency(a) == c.latency_ms for a, c in log.candidates.items())


def test_evolution_finds_the_exhaustive_optimum(tiny_space):
    latency, score = _flops_latency(tiny_space), _score(tiny_space)
    budget = 14.0
    best = max(run_algorithm("exhaustive", tiny_space, score, latency, budget).candidates.values(),
               key=lambda c: c.score)
    evo = run_algorithm("evolution", tiny_space, score, latency, budget, evals=300, seed=1)
    assert max(c.score for c in evo.candidates.values()) == pytest.approx(best.score)
    assert len(evo.candidates) <= 300 + 100  # stops near the evaluation budget


def test_search_is_seeded(tiny_space):
    latency, score = _flops_latency(tiny_space), _score(tiny_space)
    a = run_algorithm("evolution", tiny_space, score, latency, 14.0, evals=200, seed=3)
    b = run_algorithm("evolution", tiny_space, score, latency, 14.0, evals=200, seed=3)
    assert list(a.candidates) == list(b.candidates)


def test_unknown_algorithm(tiny_space):
    with pytest.raises(DassEdgeError, match="unknown search algorithm"):
        run_algorithm("annealing", tiny_space, _score(tiny_space), _flops_latency(tiny_space), 10.0)


def test_pareto_front_by_hand():
    lat = [1.0, 2.0, 2.0, 3.0, 4.0, 0.5]
    acc = [50.0, 60.0, 55.0, 58.0, 70.0, 40.0]
    assert pareto_front(lat, acc) == [5, 0, 1, 4]

"""bench/userstudy_active_variants.py: ASAP's spanning-tree round and the variants' simulated studies."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.sparse.csgraph import connected_components

from lossbench.userstudy.active import Posterior, pairs

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def variants():
    sys.path.insert(0, str(BENCH))  # the script imports userstudy_sampling from beside it
    try:
        spec = importlib.util.spec_from_file_location(
            "userstudy_active_variants", BENCH / "userstudy_active_variants.py"
        )
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(BENCH))


def test_tree_round_spans_the_conditions_by_their_most_informative_pairs(variants):
    # Scores 2 JOD apart and certain: neighbours are the most informative pairs, so the tree is the chain.
    belief = Posterior(np.linspace(0.0, 8.0, 5), 0.01 * np.eye(5))
    for seed in range(5):
        batch = variants.tree_round(belief, np.random.default_rng(seed))
        assert sorted(tuple(sorted(pair)) for pair in batch) == [(0, 1), (1, 2), (2, 3), (3, 4)]
    # Before any answer every pair ties: still a spanning tree (N − 1 pairs, connected), chosen by the seed.
    prior = Posterior.prior(8)
    trees = []
    for seed in range(5):
        batch = variants.tree_round(prior, np.random.default_rng(seed))
        graph = np.zeros((8, 8))
        for i, j in batch:
            graph[i, j] = 1
        assert len(batch) == 7 and connected_components(graph, directed=False)[0] == 1
        trees.append(frozenset(tuple(sorted(pair)) for pair in batch))
    assert len(set(trees)) > 1


@pytest.mark.parametrize("variant", ["full", "active", "laplace", "refit5", "warm1", "mst", "mst:p0.5", "soft2"])
def test_every_variant_records_cumulative_counts_at_its_marks(variants, variant):
    truth = np.array([0.0, 0.4, 1.0, 1.5, 3.0])
    ratios = []
    counts = variants.run(variant, truth, [10, 25, 40], np.random.default_rng(0), ratios)
    assert counts.shape == (3, 5, 5) and [c.sum() for c in counts] == [10, 25, 40]
    assert np.all(np.diff(counts, axis=0) >= 0) and np.all(np.diagonal(counts, axis1=1, axis2=2) == 0)
    trials = counts + counts.transpose(0, 2, 1)
    if variant == "warm1":  # the first 10 comparisons are the full design's first round: every pair once
        assert np.all(trials[0][tuple(pairs(5).T)] == 1)
    if variant == "mst":  # whole rounds of 4 pairs: after 40 comparisons every condition was compared ≥ 10 times
        assert trials[2].sum(axis=1).min() >= 10
    assert len(ratios) == (3 if variant == "active" else 0)

"""NoNN's knowledge partitioning against the paper: Louvain's resolution is eq. 5's gamma (networkx
gets 1 / gamma), and P0 is the largest group whose removal keeps the teacher's validation accuracy
within epsilon (problem 2)."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from experiments.nonn.partition import (
    choose_p0,
    community_groups,
    detect_communities,
    merge_communities,
    networkx_resolution,
    partition_filters,
)
from sim.config import ConfigError
from sim.jobs import default_config
from sim.nonn.settings import validate


def _ring_of_triangles(n: int) -> np.ndarray:
    """n triangles, each joined to the next by one edge (unit weights)."""
    net = np.zeros((3 * n, 3 * n))
    for c in range(n):
        for i in range(3 * c, 3 * c + 3):
            for j in range(3 * c, 3 * c + 3):
                net[i, j] = float(i != j)
        a, b = 3 * c, 3 * ((c + 1) % n) + 1
        net[a, b] = net[b, a] = 1.0
    return net


def _eq5(g: nx.Graph, communities: list[list[int]], gamma: float) -> float:
    """The paper's eq. 5 by hand: 1/(2m) sum_ij [F_ij - (1/gamma) k_i k_j / (2m)] delta(g_i, g_j)."""
    a = nx.to_numpy_array(g, nodelist=sorted(g), weight="weight")
    k, two_m = a.sum(axis=1), a.sum()
    label = np.empty(len(a), dtype=int)
    for c, members in enumerate(communities):
        label[members] = c
    same = label[:, None] == label[None, :]
    return float(((a - np.outer(k, k) / (gamma * two_m)) * same).sum() / two_m)


def test_resolution_is_the_papers_gamma_and_networkx_gets_its_inverse():
    net = _ring_of_triangles(8)
    for gamma in (0.7, 1.0, 2.0):
        communities, modularity, g = detect_communities(net, percentile=0, resolution=gamma, seed=1)
        ours = sorted(map(sorted, communities))
        theirs = nx.community.louvain_communities(g, weight="weight", resolution=1 / gamma, seed=1)
        assert ours == sorted(map(sorted, theirs))
        assert modularity == pytest.approx(_eq5(g, communities, gamma))
    # gamma = 0.7 (the paper's): every triangle its own community; networkx's resolution=0.7, the
    # inverted reading, pairs them up
    communities, _, g = detect_communities(net, percentile=0, resolution=0.7, seed=1)
    assert len(communities) == 8
    assert len(nx.community.louvain_communities(g, weight="weight", resolution=0.7, seed=1)) == 4
    assert networkx_resolution(0.7) == pytest.approx(1 / 0.7)
    with pytest.raises(ValueError, match="resolution"):
        networkx_resolution(0.0)


COMMUNITIES = [list(range(0, 6)), list(range(6, 10)), [10], [11], [12], list(range(13, 20))]


def test_groups_pool_the_singletons_largest_first():
    assert community_groups(COMMUNITIES) == [list(range(13, 20)), list(range(0, 6)), list(range(6, 10)), [10, 11, 12]]


def test_p0_is_the_largest_group_that_keeps_accuracy_within_epsilon():
    groups = community_groups(COMMUNITIES)
    tried = []

    def accept(p0):
        tried.append(len(p0))
        return len(p0) < 7  # dropping the group of 7 would change the accuracy too much

    assert choose_p0(groups, accept) == 1 and tried == [7, 6]
    assert choose_p0(groups, None) == 0  # no constraint: the largest, as the authors' code does
    assert choose_p0(groups, lambda p0: False) == len(groups)  # none keeps it: nothing dropped

    p0, parts = merge_communities(COMMUNITIES, 2, p0_index=1)
    assert p0 == list(range(0, 6))
    kept = sorted(f for p in parts for f in p)
    assert kept == [f for f in range(20) if f not in p0] and [len(p) for p in parts] == [7, 7]
    p0, parts = merge_communities(COMMUNITIES, 2, p0_index=4)  # P0 empty: every filter goes to a student
    assert p0 == [] and sorted(f for p in parts for f in p) == list(range(20))


def test_partition_filters_enforces_the_constraint_it_is_given():
    rng = np.random.default_rng(0)
    act = rng.random((60, 40)) ** 3
    free = partition_filters(act, 3, top=10, percentile=90, seed=5)
    assert free.p0_refused == 0
    largest = set(free.p0)
    held = partition_filters(act, 3, top=10, percentile=90, seed=5, accept=lambda p0: set(p0) != largest)
    assert held.p0_refused == 1 and set(held.p0) != largest and largest <= set(held.order)
    assert sorted(list(held.p0) + held.order) == list(range(40))
    none = partition_filters(act, 3, top=10, percentile=90, seed=5, accept=lambda p0: False)
    assert none.p0 == () and sorted(none.order) == list(range(40))


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5])
def test_p0_epsilon_is_validated(bad: float):
    cfg = default_config("nonn")
    cfg.workload.p0_epsilon = bad
    with pytest.raises(ConfigError, match=r"workload\.p0_epsilon") as info:
        validate(cfg)
    assert "\n" not in str(info.value)

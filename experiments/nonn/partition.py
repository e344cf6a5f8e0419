"""Knowledge partitioning: the teacher's filter activation network, its communities, and the
merge of those communities into P0 (dropped) and k students' partitions of nearly equal size.

Pure numpy + networkx; no clock. Follows the NoNN paper (section 4.2) with the authors'
code's details: per image, activities are clipped at 0 and divided by their maximum, only the
`top` most active filters connect; edge weights are normalised by the largest, edges below a
percentile of the non-zero weights are dropped, and Louvain finds the communities.

The resolution is the paper's gamma (its eq. 5 divides the null-model term by gamma). networkx
multiplies that term by its `resolution`, so networkx is called with 1 / gamma. The authors'
code passes 0.7 to python-louvain's `best_partition`, whose releases before the January 2022
fix (taynaud/python-louvain#92) multiplied the edge term by it instead: the same objective as
eq. 5, up to the factor gamma.

P0 is the largest group whose removal changes the teacher's validation accuracy by less than
epsilon (the constraint of the paper's problem 2); `accept` says whether a candidate does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import networkx as nx
import numpy as np

__all__ = [
    "RULES",
    "KnowledgePartition",
    "activation_network",
    "choose_p0",
    "community_groups",
    "detect_communities",
    "merge_communities",
    "networkx_resolution",
    "partition_filters",
]

RULES = ("ah", "ca")


def _pair_weights(a: np.ndarray, rule: str) -> np.ndarray:
    """(n, F) activities -> (F, F) summed pair weights: AH a_i a_j |a_i - a_j|, CA a_i a_j / (|a_i - a_j| + 1)."""
    prod = a[:, :, None] * a[:, None, :]
    diff = np.abs(a[:, :, None] - a[:, None, :])
    w = prod * diff if rule == "ah" else prod / (diff + 1.0)
    return w.sum(axis=0)


def activation_network(activity: np.ndarray, rule: str = "ah", top: int | None = 50, chunk: int = 256) -> np.ndarray:
    """The filter activation network F (F x F, zero diagonal) from per-image average filter
    activities `activity` (n_images x F), with rule `ah` (activation hubs, eq. 3 / 4) or `ca`
    (co-activation). Each image's activities are clipped at 0 and divided by their maximum;
    only its `top` most active filters take part (None: all)."""
    if rule not in RULES:
        raise ValueError(f"rule={rule!r}: allowed: {', '.join(RULES)}")
    a = np.clip(np.asarray(activity, dtype=np.float64), 0.0, None)
    peak = a.max(axis=1, keepdims=True)
    a = np.divide(a, peak, out=np.zeros_like(a), where=peak > 0)
    if top is not None and top < a.shape[1]:
        # keep each image's `top` largest activities (ties broken by filter index, stably)
        order = np.argsort(-a, axis=1, kind="stable")
        mask = np.zeros_like(a, dtype=bool)
        np.put_along_axis(mask, order[:, :top], True, axis=1)
        a = np.where(mask, a, 0.0)
    net = np.zeros((a.shape[1], a.shape[1]))
    for s in range(0, a.shape[0], chunk):
        net += _pair_weights(a[s : s + chunk], rule)
    np.fill_diagonal(net, 0.0)
    return net


def networkx_resolution(gamma: float) -> float:
    """networkx's `resolution` for the paper's gamma: eq. 5 weighs the null model by 1 / gamma,
    networkx by its resolution."""
    if not gamma > 0:
        raise ValueError(f"resolution={gamma!r}: must be > 0")
    return 1.0 / gamma


def detect_communities(
    net: np.ndarray, *, percentile: float = 99.0, resolution: float = 0.7, seed: int = 0
) -> tuple[list[list[int]], float, nx.Graph]:
    """Louvain communities of the network after normalising weights by the largest and
    dropping edges below `percentile` of the non-zero weights. Filters left without an edge
    are singletons. `resolution` is the paper's gamma (eq. 5), networkx gets 1 / gamma.
    Returns (communities as sorted filter lists, eq. 5's modularity of them, graph)."""
    nx_resolution = networkx_resolution(resolution)
    w = np.triu(np.asarray(net, dtype=np.float64), k=1)
    if w.max() > 0:
        w = w / w.max()
    nz = w[w > 0]
    cut = np.percentile(nz, percentile) if nz.size else 0.0
    g = nx.Graph()
    g.add_nodes_from(range(w.shape[0]))
    rows, cols = np.nonzero(w >= cut) if nz.size else (np.empty(0, int), np.empty(0, int))
    g.add_weighted_edges_from((int(i), int(j), float(w[i, j])) for i, j in zip(rows, cols) if w[i, j] > 0)
    communities = nx.community.louvain_communities(g, weight="weight", resolution=nx_resolution, seed=seed)
    communities = sorted((sorted(int(v) for v in c) for c in communities), key=lambda c: (-len(c), c[0]))
    modularity = 0.0
    if g.number_of_edges():
        modularity = nx.community.modularity(g, communities, weight="weight", resolution=nx_resolution)
    return communities, float(modularity), g


@dataclass(frozen=True)
class KnowledgePartition:
    """P0 (filters dropped) and the k students' partitions P_1..P_k (teacher filter indices).
    `p0_refused`: the groups larger than P0 that were kept, since dropping them changed the
    teacher's validation accuracy by epsilon or more."""

    p0: tuple[int, ...]
    parts: tuple[tuple[int, ...], ...]
    communities: int
    modularity: float
    p0_refused: int = 0

    @property
    def sizes(self) -> list[int]:
        return [len(p) for p in self.parts]

    @property
    def order(self) -> list[int]:
        """Teacher filters in partition order (P_1, then P_2, ...): the reordered teacher map."""
        return [f for p in self.parts for f in p]


def community_groups(communities: list[list[int]]) -> list[list[int]]:
    """The communities with the singletons (filters with no edge) pooled into one group, largest
    first (ties: the lowest filter first): the candidates for P0, in the order they are tried."""
    singles = sorted(c[0] for c in communities if len(c) == 1)
    groups = [sorted(c) for c in communities if len(c) > 1]
    if singles:
        groups.append(singles)
    return sorted(groups, key=lambda c: (-len(c), c[0]))


def choose_p0(groups: list[list[int]], accept: Callable[[list[int]], bool] | None) -> int:
    """Index of the group to drop as P0: the largest that `accept` takes (None takes the
    largest); len(groups), dropping nothing, when it takes none."""
    if accept is None:
        return 0
    return next((i for i, g in enumerate(groups) if accept(g)), len(groups))


def merge_communities(
    communities: list[list[int]], k: int, balance: bool = True, p0_index: int = 0
) -> tuple[list[int], list[list[int]]]:
    """(P0, [P_1..P_k]) from communities.

    Singletons (filters with no edge) are pooled into one group; groups are sorted by size
    (`community_groups`); group `p0_index` (0: the largest; len(groups): none) is P0. With
    `balance`, a group larger than ceil(n / k) (n: filters outside P0) is first cut into
    near-equal runs of its filters, so that the partitions can come out nearly equal however few
    communities there are (the paper's "almost equal" sizes; for more than two students its
    authors shuffled filters between partitions). The k largest groups then
    seed the k partitions and each remaining group joins the partition with the fewest filters
    (ties: the lowest index). If fewer than k groups remain, the largest partition is halved
    until there are k (a partition needs at least one filter). With `balance`, filters then move
    one at a time from the largest partition to the smallest until sizes differ by at most one.
    """
    if k < 1:
        raise ValueError(f"k={k}: need at least one partition")
    groups = community_groups(communities)
    if not groups:
        raise ValueError("no communities to partition")
    p0 = groups[p0_index] if p0_index < len(groups) else []
    rest = groups[:p0_index] + groups[p0_index + 1 :]
    if balance and rest:
        target = -(-sum(map(len, rest)) // k)
        cut = []
        for c in rest:
            pieces = -(-len(c) // target)
            cut += [list(a) for a in np.array_split(np.asarray(c), pieces)]
        rest = sorted(([int(f) for f in c] for c in cut), key=lambda c: (-len(c), c[0]))
    parts = [list(c) for c in rest[:k]]
    for c in rest[k:]:
        smallest = min(range(len(parts)), key=lambda i: (len(parts[i]), i))
        parts[smallest] = sorted(parts[smallest] + c)
    while len(parts) < k:
        if not parts or max(len(p) for p in parts) < 2:
            # too few filters outside P0: take them from P0
            if len(p0) < 2:
                raise ValueError(f"cannot form {k} non-empty partitions from {sum(map(len, communities))} filters")
            half = len(p0) // 2
            parts.append(p0[half:])
            p0 = p0[:half]
            continue
        big = max(range(len(parts)), key=lambda i: (len(parts[i]), -i))
        p = parts.pop(big)
        half = len(p) // 2
        parts += [p[:half], p[half:]]
    while balance and max(map(len, parts)) - min(map(len, parts)) > 1:  # even out what the cuts left
        big = max(range(k), key=lambda i: (len(parts[i]), -i))
        small = min(range(k), key=lambda i: (len(parts[i]), i))
        parts[small] = sorted(parts[small] + [parts[big].pop()])
    parts.sort(key=lambda p: (-len(p), p[0]))
    return sorted(p0), parts


def partition_filters(
    activity: np.ndarray,
    k: int,
    *,
    rule: str = "ah",
    top: int | None = 50,
    percentile: float = 99.0,
    resolution: float = 0.7,
    seed: int = 0,
    balance: bool = True,
    accept: Callable[[list[int]], bool] | None = None,
) -> KnowledgePartition:
    """The whole pipeline: activity -> network -> communities -> P0 and k partitions. P0 is
    the largest group `accept` takes (the paper's |delta val| < epsilon; None: the largest)."""
    net = activation_network(activity, rule, top)
    communities, modularity, _ = detect_communities(net, percentile=percentile, resolution=resolution, seed=seed)
    p0_index = choose_p0(community_groups(communities), accept)
    p0, parts = merge_communities(communities, k, balance, p0_index)
    return KnowledgePartition(
        p0=tuple(p0),
        parts=tuple(tuple(p) for p in parts),
        communities=len(communities),
        modularity=modularity,
        p0_refused=p0_index,
    )

"""Split a model's layers into contiguous stages, one per worker, at layer boundaries."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["PARTITIONS", "balance", "stage_bounds"]

PARTITIONS = ("flops", "time", "layers")


def balance(cost: Sequence[float], speeds: Sequence[float]) -> list[int]:
    """First-layer index of each stage, for len(speeds) stages over layers of `cost`, that
    minimises the slowest stage's cost / speed (exact dynamic programme; ties go to the
    earliest cut). Every stage gets at least one layer."""
    n, k = len(cost), len(speeds)
    if not 1 <= k <= n:
        raise ValueError(f"{k} stages over {n} layers: need 1 <= stages <= layers")
    prefix = [0.0]
    for c in cost:
        prefix.append(prefix[-1] + float(c))
    inf = float("inf")
    # best[j][i]: the smallest bottleneck placing layers [0, i) on the first j stages
    best = [[inf] * (n + 1) for _ in range(k + 1)]
    cut = [[0] * (n + 1) for _ in range(k + 1)]
    best[0][0] = 0.0
    for j in range(1, k + 1):
        for i in range(j, n - (k - j) + 1):
            for s in range(j - 1, i):
                v = max(best[j - 1][s], (prefix[i] - prefix[s]) / float(speeds[j - 1]))
                if v < best[j][i]:
                    best[j][i], cut[j][i] = v, s
    starts, i = [], n
    for j in range(k, 0, -1):
        i = cut[j][i]
        starts.append(i)
    return starts[::-1]


def stage_bounds(starts: Sequence[int], num_layers: int) -> list[tuple[int, int]]:
    """[(first, end)) layer ranges from the stages' first-layer indices."""
    ends = list(starts[1:]) + [num_layers]
    return [(int(a), int(b)) for a, b in zip(starts, ends)]

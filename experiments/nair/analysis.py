"""The paper's analyses that need no link: figure 5 (accuracy when a fraction of the elements
sent at a split is corrupted) and figure 6 (how the split layer's importance is distributed
over its units, before and after re-tuning)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from experiments.common.metrics import accuracy

from .model import NUM_STAGES, SplitNet
from .slicing import unit_importance

__all__ = ["corruption_table", "importance_table"]


def _corrupted(flat: torch.Tensor, fraction: float, mode: str, g: torch.Generator) -> torch.Tensor:
    """`flat` (images x elements) with each element hit with probability `fraction`: erased to
    0, or (`mode="noise"`) replaced by a uniform value in its image's range."""
    hit = torch.rand(flat.shape, generator=g) < fraction
    if mode == "erase":
        bad = torch.zeros_like(flat)
    else:
        lo, hi = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
        bad = lo + (hi - lo) * torch.rand(flat.shape, generator=g)
    return torch.where(hit, bad, flat)


def corruption_table(
    net: SplitNet,
    x: torch.Tensor,
    y: torch.Tensor,
    fractions: Sequence[float],
    mode: str,
    generator_seed: Callable[[int, float], int],
) -> pd.DataFrame:
    """Figure 5: accuracy of `net` when a fraction of the elements sent at each split (0 = the
    raw image) is corrupted (`corruption_mode`); `generator_seed(split, fraction)` seeds each draw."""
    rows = []
    with torch.no_grad():
        for k in range(NUM_STAGES + 1):
            o = net.forward_to(x, k)
            flat = o.reshape(len(o), -1)
            where = {"split": k, "layer": "input" if k == 0 else f"stage{k}", "elements": flat.shape[1]}
            rows.append(
                {**where, "corruption_fraction": 0.0, "accuracy": accuracy(lambda z: net.forward_from(z, k), o, y)}
            )
            for f in fractions:
                g = torch.Generator().manual_seed(generator_seed(k, f))
                z = _corrupted(flat, f, mode, g).reshape(o.shape)
                rows.append(
                    {**where, "corruption_fraction": f, "accuracy": accuracy(lambda t: net.forward_from(t, k), z, y)}
                )
    return pd.DataFrame(rows)


def importance_table(
    nets: Mapping[str, SplitNet], names: Iterable[str], k: int, channels_per_unit: int, fold_bn: bool, order: np.ndarray
) -> pd.DataFrame:
    """Figure 6: per unit of split `k`, its rank, its position in NAIR's sending order, and its
    importance (eq. 8) and share of the layer's total in each of the networks `names`."""
    units = len(order)
    columns = {"unit": np.arange(units), "rank": np.arange(1, units + 1), "sent_position_nair": np.argsort(order)}
    for name in names:
        conv, bn = nets[name].split_layer(k)
        with torch.no_grad():
            r = unit_importance(conv, bn, channels_per_unit, fold_bn).numpy().astype(np.float64)
        columns[f"importance_{name}"] = r
        columns[f"share_{name}"] = r / r.sum()
    return pd.DataFrame(columns)

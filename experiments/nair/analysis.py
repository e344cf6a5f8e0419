"""The paper's analyses beside the latency budgets: figure 5 (accuracy when the output of each
split suffers errors on the link) and figure 6 (how the split layer's importance is distributed
over its units, before and after re-tuning)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from channels import Link, flip_bits, transfer
from experiments.common.metrics import accuracy
from experiments.common.torchdev import device_of

from .model import NUM_STAGES, SplitNet
from .slicing import SlicePlan, decode_slice, encode_slices, unit_importance

__all__ = ["CORRUPTION_MODES", "corruption_table", "importance_table"]

# ber: the payload's bits through the link at that bit error rate | erase, noise: that fraction of
# the elements, drawn uniformly, arrives as 0 / as a uniform value in the image's range
CORRUPTION_MODES = ("ber", "erase", "noise")


def _over_link(o: torch.Tensor, plan: SlicePlan, link: Link, rng: np.random.Generator) -> tuple[torch.Tensor, float]:
    """`o` (images first) after each image's payload went over `link` (raw delivery: its bit
    errors reach the bytes) and was decoded as the job's receiver does; and the mean flips."""
    [payload] = encode_slices(o, plan)  # (images, bytes): one message per image
    out = np.empty(tuple(o.shape), dtype=np.float32)
    flips = 0
    for i in range(len(o)):
        buf = payload[i].copy()
        pos = transfer(link, buf.size, rng).flip_positions
        flip_bits(buf, pos)
        flips += pos.size
        out[i] = decode_slice(buf, plan, first=False)[1]
    return torch.from_numpy(out), flips / max(len(o), 1)


def _elements_hit(flat: torch.Tensor, fraction: float, mode: str, g: torch.Generator) -> tuple[torch.Tensor, float]:
    """`flat` (images x elements) with each element hit with probability `fraction`: erased to
    0, or (`mode="noise"`) replaced by a uniform value in its image's range; and the mean hits.
    The draws come from `g` on the CPU, whatever the device of `flat`."""
    hit = (torch.rand(flat.shape, generator=g) < fraction).to(flat.device)
    if mode == "erase":
        bad = torch.zeros_like(flat)
    else:
        lo, hi = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
        bad = lo + (hi - lo) * torch.rand(flat.shape, generator=g).to(flat.device)
    return torch.where(hit, bad, flat), float(hit.sum()) / max(len(flat), 1)


def corruption_table(
    net: SplitNet,
    x: torch.Tensor,
    y: torch.Tensor,
    rates: Sequence[float],
    mode: str,
    seed_for: Callable[[int, float], int],
    *,
    link_at: Callable[[float], Link] | None = None,
    bits: int = 32,
) -> pd.DataFrame:
    """Figure 5: accuracy of `net` when the output of each split (0 = the raw image) suffers
    errors at each rate. `mode="ber"`: each image's output is one message in the job's encoding
    (`bits`: 32 = float32, else quantised between its min and max) sent over `link_at(rate)`,
    whose bit errors flip its bytes; `"erase"` / `"noise"`: that fraction of the elements is hit.
    `seed_for(split, rate)` seeds each split's draws at a rate."""
    if mode not in CORRUPTION_MODES:
        raise ValueError(f"corruption_mode={mode!r}: allowed: {', '.join(CORRUPTION_MODES)}")
    rows = []
    device = device_of(net)  # computed where the network is
    x = x.to(device)
    with torch.no_grad():
        for k in range(NUM_STAGES + 1):
            o = net.forward_to(x, k)
            plan = SlicePlan(o.shape[1:], o.shape[1], bits, [0], False)  # the whole output, one unit
            where = {"split": k, "layer": "input" if k == 0 else f"stage{k}", "elements": plan.elements}
            where |= {"payload_bytes": plan.data_bytes, "corruption_mode": mode}
            tail = lambda z, k=k: net.forward_from(z, k)
            rows.append({**where, "error_rate": 0.0, "accuracy": accuracy(tail, o, y, device=device), "mean_hits": 0.0})
            for rate in rates:
                seed = seed_for(k, rate)
                if mode == "ber":
                    z, hits = _over_link(o, plan, link_at(rate), np.random.default_rng(seed))
                else:
                    flat, g = o.reshape(len(o), -1), torch.Generator().manual_seed(seed)
                    z, hits = _elements_hit(flat, rate, mode, g)
                    z = z.reshape(o.shape)
                rows.append(
                    {**where, "error_rate": rate, "accuracy": accuracy(tail, z, y, device=device), "mean_hits": hits}
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
            r = unit_importance(conv, bn, channels_per_unit, fold_bn).cpu().numpy().astype(np.float64)
        columns[f"importance_{name}"] = r
        columns[f"share_{name}"] = r / r.sum()
    return pd.DataFrame(columns)

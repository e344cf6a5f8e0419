"""The real computation around the link for the slice methods (NAIR, CLIO, the original model).

The device: `head_payload` runs the head on every test image and encodes O_k as slices
(`slicing`). The edge server: `decode_delivered` applies each delivered slice's bit errors to
its real bytes and decodes it, `received_units` puts the slices that arrived by a budget back at
their units (through the index vector of the first slice, or in native order), and `classify`
assembles the inputs (algorithm 1) and runs the tail, or CLIO's multi-tail model on the longest
received prefix. Which slices arrived, and when, is the caller's (the simulation's) business.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from channels import flip_bits
from experiments.common.torchdev import device_of

from .model import SplitNet, Tail
from .slicing import SlicePlan, assemble, decode_slice, encode_slices

__all__ = ["classify", "decode_delivered", "head_payload", "received_units"]

Decoded = dict[tuple[int, int], tuple[np.ndarray | None, np.ndarray]]  # (image, slice) -> (index vector, values)


def head_payload(
    net: SplitNet, x: torch.Tensor, k: int, channels_per_unit: int, bits: int, order: np.ndarray, send_index: bool
) -> tuple[torch.Tensor, SlicePlan, list[np.ndarray]]:
    """O_k of every image, how it is sliced, and each slice's bytes per image ((N, bytes) per slice)."""
    with torch.no_grad():
        o = net.forward_to(x.to(device_of(net)), k)
    plan = SlicePlan(o.shape[1:], channels_per_unit, bits, order, send_index)
    return o, plan, encode_slices(o, plan)


def decode_delivered(
    payload: Sequence[np.ndarray], plan: SlicePlan, deliveries: Iterable[tuple[int, int, np.ndarray]]
) -> Decoded:
    """Every delivered slice decoded once: `deliveries` gives (image, slice, flipped bit
    positions); the flips are applied to a copy of the slice's real bytes first."""
    decoded: Decoded = {}
    for image, s, flips in deliveries:
        buf = payload[s][image].copy()
        if flips.size:
            flip_bits(buf, flips)
        decoded[(image, s)] = decode_slice(buf, plan, first=s == 0)
    return decoded


def received_units(decoded: Decoded, plan: SlicePlan, image: int, arrived: Sequence[int]) -> dict[int, np.ndarray]:
    """Unit -> values of the slices of `image` that `arrived`. With the index vector (NAIR), the
    positions come from the first slice and are lost with it; a corrupted position outside the
    units is dropped. Without it, slice s holds unit `plan.order[s]`."""
    received: dict[int, np.ndarray] = {}
    if plan.send_index:
        index = decoded[(image, 0)][0] if 0 in arrived else None
        if index is not None:
            for s in arrived:
                received[int(index[s])] = decoded[(image, s)][1]
    else:
        for s in arrived:
            received[int(plan.order[s])] = decoded[(image, s)][1]
    return {u: v for u, v in received.items() if 0 <= u < plan.units}


def _prefix(received: Mapping[int, np.ndarray], units: int) -> int:
    """How many units in native order, from unit 0 on, arrived without a gap (CLIO's width)."""
    j = 0
    while j < units and j in received:
        j += 1
    return j


def _multi_tail(tails: Sequence[Tail], batch: torch.Tensor, prefix: np.ndarray, channels_per_unit: int) -> torch.Tensor:
    """CLIO multi-tail: each input through the tail of its received prefix (nothing received:
    the narrowest tail, on zeros), where the tails are; the classes on the CPU."""
    pred = torch.zeros(len(batch), dtype=torch.long)
    batch = batch.to(device_of(tails[0]))
    for m in np.unique(prefix):
        idx = torch.as_tensor(np.flatnonzero(prefix == m))
        width = max(int(m), 1) * channels_per_unit
        pred[idx] = tails[max(int(m), 1) - 1](batch[idx, :width]).argmax(1).cpu()
    return pred


def classify(
    tail: nn.Module, tails: Sequence[Tail] | None, plan: SlicePlan, received: Sequence[Mapping[int, np.ndarray]]
) -> torch.Tensor:
    """The predicted class of every image from the units it received (`received_units`), the
    missing ones zero (algorithm 1): through `tail`, or CLIO's `tails` when given (where they
    are; the classes on the CPU)."""
    batch = torch.zeros((len(received), *plan.shape))
    prefix = np.zeros(len(received), dtype=np.int64)
    for i, units in enumerate(received):
        prefix[i] = _prefix(units, plan.units)
        batch[i] = assemble(units, plan.shape, plan.cpu)
    with torch.no_grad():
        if tails is None:
            return tail(batch.to(device_of(tail))).argmax(1).cpu()
        return _multi_tail(tails, batch, prefix, plan.cpu)

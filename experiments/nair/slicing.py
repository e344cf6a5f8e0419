"""Channel importance, importance-ordered slices, their payload bytes, and selective assembly.

- `unit_importance`: eq. 8 of the NAIR paper, the L1 norm of the split layer's filters, summed
  over the channels of each *unit* (`channels_per_unit` consecutive channels, the paper's
  "every second channel as a unit"). With `fold_bn` the filter is the one the layer applies at
  inference, the convolution scaled by its batch norm (gamma / sqrt(running_var + eps)).
- `importance_order`: units sorted by descending importance, the index vector I_k.
- `encode_slices` / `decode_slice`: the bytes that go over the link, one buffer per slice, the
  index vector in front of the first slice when the receiver needs it; elements as float32
  (`bits = 32`) or uniformly quantised to `bits` (1..16) between the slice's min and max.
- `assemble`: algorithm 1, received units put back at their original channels, zeros elsewhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

__all__ = [
    "FLOAT_BITS",
    "SlicePlan",
    "assemble",
    "decode_slice",
    "encode_slices",
    "importance_order",
    "pack_codes",
    "prefix_masks",
    "unit_importance",
    "units_in_budget",
    "unpack_codes",
]

FLOAT_BITS = 32  # bits per element meaning "send float32 as is"
_RANGE_BYTES = 8  # a quantised slice carries its float32 min and max


def unit_importance(
    conv: nn.Conv2d, bn: nn.BatchNorm2d | None, channels_per_unit: int, fold_bn: bool = True
) -> torch.Tensor:
    """Eq. 8 per unit: sum over the unit's output channels of ||F_c||_1 (differentiable in the
    weights; with `fold_bn` the batch-norm scale |gamma| / sqrt(running_var + eps) multiplies
    each filter, its running statistics taken as constants)."""
    per_filter = conv.weight.abs().flatten(1).sum(1)
    if fold_bn and bn is not None:
        per_filter = per_filter * bn.weight.abs() / torch.sqrt(bn.running_var.detach() + bn.eps)
    c = per_filter.shape[0]
    if c % channels_per_unit:
        raise ValueError(f"channels_per_unit={channels_per_unit}: must divide the split layer's {c} channels")
    return per_filter.view(c // channels_per_unit, channels_per_unit).sum(1)


def importance_order(importance: torch.Tensor | np.ndarray) -> np.ndarray:
    """Unit indices by descending importance (ties: lower index first): the index vector."""
    r = np.asarray(importance.detach().cpu() if isinstance(importance, torch.Tensor) else importance, dtype=np.float64)
    return np.lexsort((np.arange(r.size), -r)).astype(np.int64)


def prefix_masks(order: Sequence[int], channels: int, channels_per_unit: int) -> torch.Tensor:
    """(J, C) float masks: row j-1 keeps the channels of the first j units of `order`."""
    j_count = len(order)
    masks = torch.zeros(j_count, channels)
    for j, unit in enumerate(order):
        masks[j:, unit * channels_per_unit : (unit + 1) * channels_per_unit] = 1.0
    return masks


class SlicePlan:
    """How one intermediate representation of shape (C, H, W) is cut and encoded.

    `order` is the sending order of the units; `send_index` puts the index vector (one byte
    per unit) in front of the first slice (NAIR); without it the receiver takes slices to be in
    native order (the original model, CLIO).
    """

    def __init__(self, shape: Sequence[int], channels_per_unit: int, bits: int, order: Sequence[int], send_index: bool):
        c, h, w = (int(s) for s in shape)
        if c % channels_per_unit:
            raise ValueError(f"channels_per_unit={channels_per_unit}: must divide {c} channels")
        if not (1 <= bits <= 16 or bits == FLOAT_BITS):
            raise ValueError(f"bits_per_element={bits}: allowed 1..16 or 32")
        self.shape = (c, h, w)
        self.cpu = channels_per_unit
        self.units = c // channels_per_unit
        if self.units > 256:
            raise ValueError("at most 256 units: the index vector uses one byte per unit")
        self.bits = bits
        self.order = np.asarray(order, dtype=np.int64)
        if sorted(self.order.tolist()) != list(range(self.units)):
            raise ValueError(f"order={self.order.tolist()}: must be a permutation of 0..{self.units - 1}")
        self.send_index = send_index
        self.elements = channels_per_unit * h * w  # per unit

    @property
    def data_bytes(self) -> int:
        """Bytes of one unit's elements (plus its min/max when quantised)."""
        if self.bits == FLOAT_BITS:
            return 4 * self.elements
        return (self.elements * self.bits + 7) // 8 + _RANGE_BYTES

    def slice_sizes(self) -> list[int]:
        """Bytes of each slice in sending order (the first carries the index vector)."""
        sizes = [self.data_bytes] * self.units
        if self.send_index:
            sizes[0] += self.units
        return sizes


def pack_codes(codes: np.ndarray, bits: int) -> np.ndarray:
    """(N, E) integer codes < 2**bits -> (N, ceil(E*bits/8)) bytes, most significant bit first."""
    shifts = np.arange(bits - 1, -1, -1, dtype=np.uint32)
    bitplanes = ((codes[..., None].astype(np.uint32) >> shifts) & 1).astype(np.uint8)
    return np.packbits(bitplanes.reshape(codes.shape[0], -1), axis=1)


def unpack_codes(buf: np.ndarray, elements: int, bits: int) -> np.ndarray:
    """The first `elements` codes of `bits` bits packed in `buf` (the inverse of `pack_codes`)."""
    flat = np.unpackbits(buf)[: elements * bits].reshape(elements, bits).astype(np.uint32)
    return (flat << np.arange(bits - 1, -1, -1, dtype=np.uint32)).sum(1)


def encode_slices(o: torch.Tensor, plan: SlicePlan) -> list[np.ndarray]:
    """The payload of every image: for slice s (in sending order), an (N, bytes_s) uint8 array."""
    x = o.detach().cpu().float().numpy()
    n = x.shape[0]
    units = x.reshape(n, plan.units, plan.elements)  # channel-major: unit u = channels u*cpu..
    out = []
    for s, unit in enumerate(plan.order):
        v = np.ascontiguousarray(units[:, unit, :])
        if plan.bits == FLOAT_BITS:
            data = v.astype("<f4").view(np.uint8).reshape(n, -1)
        else:
            lo = v.min(1, keepdims=True)
            hi = v.max(1, keepdims=True)
            levels = (1 << plan.bits) - 1
            scale = np.where(hi > lo, (hi - lo) / levels, 1.0)
            codes = np.clip(np.rint((v - lo) / scale), 0, levels).astype(np.uint32)
            rng_bytes = np.concatenate([lo, hi], 1).astype("<f4").view(np.uint8).reshape(n, -1)
            data = np.concatenate([rng_bytes, pack_codes(codes, plan.bits)], 1)
        if s == 0 and plan.send_index:
            index = np.broadcast_to(plan.order.astype(np.uint8), (n, plan.units))
            data = np.concatenate([index, data], 1)
        out.append(np.ascontiguousarray(data))
    return out


def decode_slice(buf: np.ndarray, plan: SlicePlan, first: bool) -> tuple[np.ndarray | None, np.ndarray]:
    """One received slice's bytes -> (the index vector it carried or None, the unit's
    elements as float32 of shape (cpu, H, W)). Corrupted floats that are not finite become 0."""
    index = None
    if first and plan.send_index:
        index, buf = buf[: plan.units].astype(np.int64), buf[plan.units :]
    if plan.bits == FLOAT_BITS:
        v = buf.view("<f4").astype(np.float32)
    else:
        with np.errstate(invalid="ignore"):  # a bit error can make the range a signalling NaN
            lo, hi = buf[:_RANGE_BYTES].view("<f4").astype(np.float64)
        levels = (1 << plan.bits) - 1
        codes = unpack_codes(buf[_RANGE_BYTES:], plan.elements, plan.bits)
        with np.errstate(over="ignore", invalid="ignore"):
            scale = (hi - lo) / levels if hi > lo else 1.0
            v = (lo + codes * scale).astype(np.float32)
    v = np.where(np.isfinite(v), v, 0.0).astype(np.float32)
    return index, v.reshape(plan.cpu, plan.shape[1], plan.shape[2])


def assemble(
    received: Mapping[int, np.ndarray | torch.Tensor], shape: Sequence[int], channels_per_unit: int
) -> torch.Tensor:
    """Algorithm 1 (selective assembly): each received unit back at its original channels,
    zero vectors for the units that did not arrive. `received` maps unit index -> (cpu, H, W)."""
    c, h, w = (int(s) for s in shape)
    out = torch.zeros(c, h, w)
    for unit, values in received.items():
        if 0 <= unit < c // channels_per_unit:
            out[unit * channels_per_unit : (unit + 1) * channels_per_unit] = torch.as_tensor(
                values, dtype=torch.float32
            )
    return out


def units_in_budget(
    budget_s: float,
    unit_bytes: int,
    first_extra_bytes: int,
    units: int,
    rate_bps: float,
    packet_bytes: int,
    header_bytes: int,
    latency_s: float = 0.0,
) -> int:
    """How many slices an error-free link delivers by `budget_s`: each slice is packetised on its
    own (`packet_bytes` of payload + `header_bytes` per packet), sent back to back at `rate_bps`
    after a one-way `latency_s`. The figure the simulation must reproduce when BER = 0."""
    t = latency_s
    for j in range(units):
        size = unit_bytes + (first_extra_bytes if j == 0 else 0)
        packets = -(-size // packet_bytes)
        t += (8 * size + 8 * header_bytes * packets) / rate_bps
        if t > budget_s + 1e-12:
            return j
    return units

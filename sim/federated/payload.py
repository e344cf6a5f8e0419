"""The federated messages' payload as the links see it: its size in bytes (as Flower serialises
it), its values (for the server's aggregation work), and what a raw channel's bit flips do to
the real arrays it carries."""

from __future__ import annotations

import numpy as np
from flwr.app import Array, ArrayRecord, Message, RecordDict

from channels import TransferOutcome, corrupt_arrays
from experiments.federated.records import array_view

__all__ = ["deliver", "finite", "message_bytes", "phase_of", "value_count"]


def phase_of(msg: Message) -> str:
    return "train" if msg.metadata.message_type.startswith("train") else "evaluate"


def _arrays(content: RecordDict) -> list[tuple[str, ArrayRecord]]:
    return [(k, v) for k, v in content.items() if isinstance(v, ArrayRecord)]


def value_count(content: RecordDict) -> int:
    return sum(array_view(arr).size for _, rec in _arrays(content) for arr in rec.values())


def finite(content: RecordDict) -> bool:
    """Whether every floating-point value the message's arrays carry is finite (no NaN, no inf)."""
    for _, rec in _arrays(content):
        for arr in rec.values():
            values = array_view(arr)
            if values.dtype.kind in "fc" and not np.isfinite(values).all():
                return False
    return True


def message_bytes(content: RecordDict) -> int:
    """Bytes the message's arrays occupy serialised (as Flower counts them)."""
    return sum(rec.count_bytes() for _, rec in _arrays(content))


def _data_positions(content: RecordDict, positions: np.ndarray) -> np.ndarray:
    """Map bit positions in the serialised payload (each array's npy bytes and its key, in
    order) to positions in the concatenated numeric data. Flips that land on an npy header
    or a key are dropped: that framing travels in the packet header, under its CRC."""
    keep, data_start, offset = [], 0, 0
    for _, rec in _arrays(content):
        for name, arr in rec.items():
            nbytes = array_view(arr).nbytes
            header = len(arr.data) - nbytes
            lo, hi = (offset + header) * 8, (offset + header + nbytes) * 8
            inside = positions[(positions >= lo) & (positions < hi)]
            keep.append(inside - lo + data_start * 8)
            data_start += nbytes
            offset += len(arr.data) + len(name)
    return np.concatenate(keep) if keep else np.zeros(0, dtype=np.int64)


def _corrupted(content: RecordDict, positions: np.ndarray) -> RecordDict:
    """A copy of `content` with bit flips applied to the real array data."""
    arrays = [array_view(arr) for _, rec in _arrays(content) for arr in rec.values()]
    flipped = iter(corrupt_arrays(arrays, positions))
    out = RecordDict()
    for key, value in content.items():
        if isinstance(value, ArrayRecord):
            value = ArrayRecord({name: Array(next(flipped)) for name in value})
        out[key] = value
    return out


def deliver(content: RecordDict, outcome: TransferOutcome) -> tuple[RecordDict, int]:
    """What arrives: the content, with the raw channel's flips applied; and the flip count."""
    if outcome.flip_positions.size == 0:
        return content, 0
    positions = _data_positions(content, outcome.flip_positions)
    if positions.size == 0:
        return content, 0
    return _corrupted(content, positions), int(positions.size)

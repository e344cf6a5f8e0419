"""The federated messages' payload as the links see it: its size in bytes (as Flower serialises
it), its values (for the server's aggregation work), and what a raw channel's bit flips do to
the real arrays it carries."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from flwr.app import Array, ArrayRecord, Message, RecordDict

from channels import TransferOutcome, corrupt_arrays
from experiments.federated.records import NpyArray, array_view, npy_array

__all__ = ["Arrival", "deliver", "finite", "message_bytes", "phase_of", "received", "value_count"]

NPY = "numpy.ndarray"  # an Array's `stype` for `.npy` bytes


def phase_of(msg: Message) -> str:
    return "train" if msg.metadata.message_type.startswith("train") else "evaluate"


def _arrays(content: RecordDict) -> list[tuple[str, ArrayRecord]]:
    return [(k, v) for k, v in content.items() if isinstance(v, ArrayRecord)]


def value_count(content: RecordDict) -> int:
    return sum(array_view(arr).size for _, rec in _arrays(content) for arr in rec.values())


class Arrival(NamedTuple):
    """A reply as the server received it (past the uplink's bit flips), with what the server asks
    of every reply it takes: whether its arrays are all finite (`SimGrid.rejects`) and how many
    values it aggregates (its aggregation's FLOPs). Found as each reply arrives (`Arrival.of`),
    while the back end runs the step's other jobs, not after the step, when they would wait."""

    reply: Message
    sent: ArrayRecord | None  # the weights before the uplink's flips, for the activation probe
    finite: bool
    values: int

    @classmethod
    def of(cls, reply: Message, sent: ArrayRecord | None) -> Arrival:
        return cls(reply, sent, finite(reply.content), value_count(reply.content))


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
            value = ArrayRecord({name: npy_array(next(flipped)) for name in value})
        out[key] = value
    return out


def deliver(content: RecordDict, outcome: TransferOutcome, memo: dict | None = None) -> tuple[RecordDict, int]:
    """What arrives: the content, with the raw channel's flips applied, as `received` gives it;
    and the flip count. `memo` (by the content's id, for contents alive while it is): the
    contents of a round's messages, one object, converted once."""
    if outcome.flip_positions.size == 0:
        return received(content, memo), 0
    positions = _data_positions(content, outcome.flip_positions)
    if positions.size == 0:
        return received(content, memo), 0
    return _corrupted(content, positions), int(positions.size)


def received(content: RecordDict, memo: dict | None = None) -> RecordDict:
    """`content` as the other end holds it: the same records, with every `.npy` array an
    `NpyArray` (the same fields and bytes; its `numpy()` reads the data where it lies instead
    of parsing the header with `np.load`). A real receiver inflates fresh records from the
    wire too; here a user's ClientApp reading the server's model (`to_torch_state_dict`) and
    the server's strategy reading every reply (FedAvg's aggregation) skip one `np.load` per
    array: ~170 us per client and ~60 ms per round of 500 replies for the digits MLP of
    benchmarks/vs_flower.py. Content without plain `.npy` arrays is returned as it is."""
    if memo is not None and id(content) in memo:
        return memo[id(content)][1]
    out = content
    if any(_plain(arr) for _, rec in _arrays(content) for arr in rec.values()):
        out = RecordDict()
        for key, value in content.items():
            if isinstance(value, ArrayRecord):
                record = ArrayRecord()  # filled item by item: ArrayRecord(dict) would copy every Array
                for name, arr in value.items():
                    record[name] = NpyArray.direct(arr.dtype, tuple(arr.shape), arr.data) if _plain(arr) else arr
                value = record
            out[key] = value
    if memo is not None:
        memo[id(content)] = content, out  # the content kept alive: its id stays its own
    return out


def _plain(arr: Array) -> bool:
    return type(arr) is Array and arr.stype == NPY

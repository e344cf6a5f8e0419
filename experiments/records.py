"""Fast reads and writes of Flower's serialised arrays.

A Flower `Array` holds `.npy` bytes; `Array.numpy()` parses the header with `np.load` each
time, which costs several times the copy itself for a small model. The data sits at the end
of the buffer, so a view at `len(data) - nbytes` reads it directly. Writing, `np.save` builds
the same header again for every array; `to_array_record` builds it once per (dtype, shape)
and gives byte for byte what `ArrayRecord(state_dict)` gives.
"""
from __future__ import annotations

import io

import numpy as np
import torch
from flwr.app import Array, ArrayRecord

__all__ = ["NpyArray", "array_view", "to_array_record", "to_state_dict"]

_NPY_HEADERS: dict[tuple[str, tuple[int, ...]], bytes] = {}


def array_view(arr: Array) -> np.ndarray:
    """The array's values as a read-only view of its bytes (C order); falls back to
    `Array.numpy()` for anything else."""
    dtype = np.dtype(arr.dtype)
    count = int(np.prod(arr.shape, dtype=np.int64))
    offset = len(arr.data) - count * dtype.itemsize
    if offset <= 0 or b"True" in arr.data[:offset]:  # not .npy, or Fortran order
        return arr.numpy()
    return np.frombuffer(arr.data, dtype=dtype, count=count, offset=offset).reshape(arr.shape)


def to_state_dict(record: ArrayRecord) -> dict[str, torch.Tensor]:
    """`ArrayRecord.to_torch_state_dict()`, without re-parsing every header."""
    return {name: torch.from_numpy(array_view(arr).copy()) for name, arr in record.items()}


def _npy_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    key = (dtype.str, shape)
    header = _NPY_HEADERS.get(key)
    if header is None:
        buf = io.BytesIO()
        probe = np.zeros(shape, dtype=dtype)
        np.save(buf, probe, allow_pickle=False)
        header = _NPY_HEADERS[key] = buf.getvalue()[: len(buf.getvalue()) - probe.nbytes]
    return header


class NpyArray(Array):
    """A Flower `Array` (same fields, same bytes) whose `numpy()` reads the data where it lies
    instead of parsing the `.npy` header again: a strategy reading every reply (FedAvg's
    aggregation) then skips one `np.load` per array. Deflated (Flower's wire format, object
    ids) it is a plain `Array`."""

    def numpy(self) -> np.ndarray:
        if self.stype != "numpy.ndarray":
            return super().numpy()
        return array_view(self).copy()  # writable, as np.load's

    @classmethod
    def direct(cls, dtype: str, shape: tuple[int, ...], data: bytes) -> "NpyArray":
        """`NpyArray(dtype=dtype, shape=shape, stype="numpy.ndarray", data=data)`, the same
        attributes and state (dirty, no cached object id), without `Array.__init__`'s argument
        checks and per-field `__setattr__` (~20 us an array, a tenth of a client's reply);
        tests/test_records.py holds it to Flower's constructor."""
        arr = cls.__new__(cls)
        arr.__dict__.update(_is_dirty=True, dtype=dtype, shape=shape, stype="numpy.ndarray", data=data)
        return arr

    def deflate(self) -> bytes:
        return Array(dtype=self.dtype, shape=tuple(self.shape), stype=self.stype, data=self.data).deflate()


def to_array_record(state_dict: dict[str, torch.Tensor]) -> ArrayRecord:
    """`ArrayRecord(state_dict)` (the same `.npy` bytes), with each header built once per shape
    and `NpyArray`s for fast reading."""
    record = ArrayRecord()  # filled item by item: ArrayRecord(dict) would copy every Array again
    for name, tensor in state_dict.items():
        arr = tensor.detach().cpu().numpy()
        if arr.dtype.hasobject or not arr.flags.c_contiguous:
            record[name] = Array.from_numpy_ndarray(arr)  # np.save's own path for anything unusual
            continue
        record[name] = NpyArray.direct(str(arr.dtype), tuple(arr.shape),
                                       b"".join((_npy_header(arr.dtype, arr.shape), memoryview(arr).cast("B"))))
    return record

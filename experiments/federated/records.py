"""Fast reads and writes of Flower's serialised arrays.

A Flower `Array` holds `.npy` bytes; `Array.numpy()` parses the header with `np.load` each
time, which costs several times the copy itself for a small model. The data sits at the end
of the buffer, so a view at `len(data) - nbytes` reads it directly. Writing, `np.save` builds
the same header again for every array; `to_array_record` builds it once per (dtype, shape)
and gives byte for byte what `ArrayRecord(state_dict)` gives. `ModelRecords` copies a
record's values straight into a model's tensors, as `model.load_state_dict(to_state_dict(record))`
would without the intermediate tensors, and encodes them from the same views. Per array, numpy's
`str(dtype)` and `np.prod(shape)` cost more than a small array's copy; both are replaced by a
cache and `math.prod`.
"""

from __future__ import annotations

import functools
import io
import math

import numpy as np
import torch
from flwr.app import Array, ArrayRecord
from torch.autograd.graph import increment_version

from experiments.federated.internals import custom_state_dict, new_array

__all__ = ["ModelRecords", "NpyArray", "array_view", "npy_array", "to_array_record", "to_state_dict"]

_NPY_HEADERS: dict[tuple[np.dtype, tuple[int, ...]], bytes] = {}
_dtype = functools.cache(np.dtype)  # Array.dtype (a string) -> numpy dtype
_dtype_name = functools.cache(str)  # numpy dtype -> str(dtype), as Array.from_numpy_ndarray writes it


def array_view(arr: Array) -> np.ndarray:
    """The array's values as a read-only view of its bytes (C order); falls back to
    `Array.numpy()` for anything else."""
    dtype = _dtype(arr.dtype)
    count = math.prod(arr.shape)
    offset = len(arr.data) - count * dtype.itemsize
    if offset <= 0 or b"True" in arr.data[:offset]:  # not .npy, or Fortran order
        return Array.numpy(arr)  # Flower's own (an NpyArray's `numpy` reads through this function)
    return np.frombuffer(arr.data, dtype=dtype, count=count, offset=offset).reshape(arr.shape)


def to_state_dict(record: ArrayRecord) -> dict[str, torch.Tensor]:
    """`ArrayRecord.to_torch_state_dict()`, without re-parsing every header."""
    return {name: torch.from_numpy(array_view(arr).copy()) for name, arr in record.items()}


def _npy_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    key = (dtype, shape)
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
        values = array_view(self)
        # writable, as np.load's: a copy of the view of the bytes, or what np.load gave itself (Fortran order)
        return values if values.flags.writeable else values.copy()

    @classmethod
    def direct(cls, dtype: str, shape: tuple[int, ...], data: bytes) -> NpyArray:
        """`NpyArray(dtype=dtype, shape=shape, stype="numpy.ndarray", data=data)`, the same
        attributes and state (dirty, no cached object id), without `Array.__init__`'s argument
        checks and per-field `__setattr__`;
        tests/test_records.py holds it to Flower's constructor."""
        return new_array(cls, dtype, shape, data)

    def deflate(self) -> bytes:
        return Array(dtype=self.dtype, shape=tuple(self.shape), stype=self.stype, data=self.data).deflate()


def npy_array(arr: np.ndarray) -> Array:
    """`Array(arr)` (the same `.npy` bytes): an `NpyArray` with its header built once per
    (dtype, shape), or Flower's own `np.save` path for anything unusual."""
    if arr.dtype.hasobject or not arr.flags.c_contiguous:
        return Array.from_numpy_ndarray(arr)
    return NpyArray.direct(
        _dtype_name(arr.dtype), arr.shape, b"".join((_npy_header(arr.dtype, arr.shape), memoryview(arr).cast("B")))
    )


def to_array_record(state_dict: dict[str, torch.Tensor]) -> ArrayRecord:
    """`ArrayRecord(state_dict)` (the same `.npy` bytes), with each header built once per shape
    and `NpyArray`s for fast reading."""
    return _npy_record((name, tensor.detach().cpu().numpy()) for name, tensor in state_dict.items())


def _npy_record(items) -> ArrayRecord:
    record = ArrayRecord()  # filled item by item: ArrayRecord(dict) would copy every Array again
    for name, arr in items:
        record[name] = npy_array(arr)
    return record


class ModelRecords:
    """One model's weights to and from Flower records, for a model whose structure does not
    change (a ClientApp's one model, the server's evaluation model).

    `load(record)` is `model.load_state_dict(to_state_dict(record))` (strict) without building
    the state dict: each value is copied from its bytes straight into the model's own (CPU)
    tensor, through numpy views of those tensors (taken again when a tensor is replaced). `record()` is
    `to_array_record(model.state_dict())`, from the same views. A record that does not match
    names, shapes and dtypes exactly, or a model with its own state-dict handling (save or
    load hooks, BatchNorm's `_load_from_state_dict`, any `_save_to_state_dict`), takes torch's
    `state_dict`/`load_state_dict` themselves, with their errors."""

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self._take_views()

    def _take_views(self) -> None:
        model = self.model
        targets = model.state_dict(keep_vars=True)
        self.names = list(targets)
        self.tensors = list(targets.values())
        direct = not custom_state_dict(model) and all(
            t.device.type == "cpu" and t.dtype in _NUMPY_DTYPES for t in self.tensors
        )
        self.views = [t.detach().numpy() for t in self.tensors] if direct else None
        # where each tensor lives (module, attribute) and its storage, to notice a replaced one;
        # a view keeps the old storage alive, so a new tensor cannot reuse its address
        owners = [name.rpartition(".") for name in self.names]
        self._owners = [(model.get_submodule(prefix), attr) for prefix, _, attr in owners]
        self._layouts = [_layout(t) for t in self.tensors]

    def _current(self) -> bool:
        """Whether the views still are the model's tensors: a parameter replaced since
        (`p.data = ...`, a transposed or reinterpreted `.data` on the same storage, `module.weight = ...`,
        `module.to(...)`) gets fresh views, never stale ones."""
        if self.views is None:
            return False
        for (module, attr), t, layout in zip(self._owners, self.tensors, self._layouts):
            now = getattr(module, attr, None)
            if now is not t or _layout(now) != layout:
                self._take_views()
                break
        return self.views is not None

    def load(self, record: ArrayRecord) -> None:
        if self._current() and list(record) == self.names:
            values = [array_view(record[name]) for name in self.names]
            if all(d.shape == v.shape and d.dtype == v.dtype for d, v in zip(self.views, values)):
                for d, v in zip(self.views, values):
                    np.copyto(d, v)
                increment_version(self.tensors)  # as copy_ would: autograd sees the change
                return
        self.model.load_state_dict(to_state_dict(record))

    def record(self) -> ArrayRecord:
        if not self._current():
            return to_array_record(self.model.state_dict())
        return _npy_record(zip(self.names, self.views))


def _layout(t: torch.Tensor) -> tuple:
    """Where and how a tensor's values lie: storage address, shape, strides, dtype."""
    return t.data_ptr(), t.shape, t.stride(), t.dtype


_NUMPY_DTYPES = {
    getattr(torch, n) for n in ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool")
}

"""Fast reads of Flower's serialised arrays.

A Flower `Array` holds `.npy` bytes; `Array.numpy()` parses the header with `np.load` each
time, which costs several times the copy itself for a small model. The data sits at the end
of the buffer, so a view at `len(data) - nbytes` reads it directly.
"""
from __future__ import annotations

import numpy as np
import torch
from flwr.app import Array, ArrayRecord

__all__ = ["array_view", "to_state_dict"]


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

"""FLOPs of real PyTorch computations, as PyTorch's `FlopCounterMode` counts them (2 per
multiply-accumulate), for every experiment that charges its computation to a device.

`count_flops` counts one call; `FlopCache` counts the first call for a key and reuses the
figure after: the FLOPs of an operation depend only on the operation and its shapes, and
counting every call makes training several times slower.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from torch.utils.flop_counter import FlopCounterMode

__all__ = ["FlopCache", "count_flops"]

T = TypeVar("T")


def count_flops(fn: Callable[[], T]) -> tuple[T, int]:
    """(fn(), the FLOPs it performed); gradient mode and module state are the caller's."""
    with FlopCounterMode(display=False) as counter:
        out = fn()
    return out, int(counter.get_total_flops())


class FlopCache:
    """FLOP counts by key (e.g. operation, layer, input shape), each counted once."""

    def __init__(self) -> None:
        self.cache: dict[Hashable, int] = {}

    def run(self, key: Hashable, fn: Callable[[], Any]) -> tuple[Any, int]:
        """(fn(), its FLOPs); FLOPs counted on the first call for `key`, reused after."""
        flops = self.cache.get(key)
        if flops is not None:
            return fn(), flops
        out, self.cache[key] = count_flops(fn)
        return out, self.cache[key]

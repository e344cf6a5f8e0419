"""FLOPs of real computations, counted with PyTorch's `FlopCounterMode` once per key.

Counting every call makes training several times slower, and the FLOPs of a call depend only
on the operation and the shapes, so the first call for a key (stage, operation, batch shape)
is counted and later calls reuse the figure.
"""
from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from torch.utils.flop_counter import FlopCounterMode

__all__ = ["FlopCache"]


class FlopCache:
    def __init__(self) -> None:
        self.cache: dict[Hashable, int] = {}

    def run(self, key: Hashable, fn: Callable[[], Any]) -> tuple[Any, int]:
        """(fn(), its FLOPs); FLOPs counted on the first call for `key`, reused after."""
        flops = self.cache.get(key)
        if flops is not None:
            return fn(), flops
        with FlopCounterMode(display=False) as counter:
            out = fn()
        self.cache[key] = flops = int(counter.get_total_flops())
        return out, flops

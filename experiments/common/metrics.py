"""Measures of models shared by the workloads (no clock, no simulation)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

__all__ = ["accuracy", "count_params"]


def count_params(module: nn.Module) -> int:
    """Number of parameters of `module`, trainable or not (a model's size on a device)."""
    return sum(p.numel() for p in module.parameters())


@torch.no_grad()
def accuracy(
    fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024
) -> float:
    """Fraction of `y` that the argmax of `fn(x)` gets right, `batch_size` inputs at a time
    (a model must already be in eval mode); NaN when there is nothing to score."""
    if len(y) == 0:
        return math.nan
    right = 0
    for start in range(0, len(y), batch_size):
        right += int((fn(x[start : start + batch_size]).argmax(1) == y[start : start + batch_size]).sum())
    return right / len(y)

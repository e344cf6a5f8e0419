"""Measures of models shared by the workloads (no clock, no simulation)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from experiments.common.torchdev import device_of

__all__ = ["accuracy", "count_params"]


def count_params(module: nn.Module) -> int:
    """Number of parameters of `module`, trainable or not (a model's size on a device)."""
    return sum(p.numel() for p in module.parameters())


@torch.no_grad()
def accuracy(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int = 1024,
    device: torch.device | None = None,
) -> float:
    """Fraction of `y` that the argmax of `fn(x)` gets right, `batch_size` inputs at a time
    (a model must already be in eval mode); NaN when there is nothing to score. Computed on
    `device`; when None, where `fn` is if it is a module (else where `x` is)."""
    if len(y) == 0:
        return math.nan
    if device is None and isinstance(fn, nn.Module):
        device = device_of(fn)
    right = 0
    for start in range(0, len(y), batch_size):
        xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        if device is not None:
            xb, yb = xb.to(device), yb.to(device)
        right += int((fn(xb).argmax(1) == yb).sum())
    return right / len(y)

"""What every workload's SGD training takes (no clock, no simulation)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SGDSettings"]


@dataclass(frozen=True)
class SGDSettings:
    """SGD settings of one model's training; `seed` orders its batches."""

    epochs: int
    lr: float = 0.1
    batch_size: int = 64
    momentum: float = 0.9
    weight_decay: float = 5e-4
    seed: int = 0

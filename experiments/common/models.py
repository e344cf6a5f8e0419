"""Models for edgesim: a FedMAX-style CNN and a small MLP.

Every model exposes the last hidden activation ``a`` (post-ReLU output of the last
hidden layer, i.e. the classifier's input), which FedMAX's activation-divergence
term needs: ``forward(x) -> logits``, ``features(x) -> a`` and
``forward_with_features(x) -> (logits, a)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

MODEL_NAMES = ("cnn", "fedmax_cifar_cnn", "mlp")
FEDMAX_CHANNELS: tuple[int, ...] = (32, 64, 64)
FEDMAX_HIDDEN = 512
SMALL_CHANNELS: tuple[int, ...] = (16, 32, 32)
SMALL_HIDDEN = 128


class _FeatureModel(nn.Module):
    """Base: subclasses define ``features``; the head maps features to logits."""

    head: nn.Linear

    def features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and last hidden activation from one pass."""
        a = self.features(x)
        return self.head(a), a

    def forward(self, x: torch.Tensor, with_features: bool = False):
        """Logits; with `with_features`, (logits, last hidden activation) from one pass.

        Going through `__call__` this way lets hooks (the simulator's FLOP and memory meter)
        see the whole model as one call."""
        a = self.features(x)
        return (self.head(a), a) if with_features else self.head(a)


class FedCNN(_FeatureModel):
    """FedMAX's CIFAR-10 CNN generalised to any (C, H, W).

    Stage 0 is one 3x3 conv, each later stage two; all convs are bias-free with ReLU.
    Each stage ends in a 2x2 max-pool while that leaves at least 2x2 pixels, so 32x32
    pools three times (4x4), 28x28 three times (3x3) and 8x8 twice (2x2). Then
    fc -> ``hidden`` -> ReLU (the features) and fc -> ``num_classes``.
    ReLU layers get He-normal init (zero fc bias); the head keeps torch's default.
    Widths default to FedMAX's ((32, 64, 64), 512) for inputs of at least 16x16 and to
    ((16, 32, 32), 128) for smaller ones such as 8x8 digits.
    With input (3, 32, 32), 10 classes and FedMAX's widths it has 659,818 parameters.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        channels: Sequence[int] | None = None,
        hidden: int | None = None,
    ) -> None:
        super().__init__()
        c, h, w = _check_shape(input_shape)
        small = min(h, w) < 16
        channels = tuple(channels) if channels is not None else (SMALL_CHANNELS if small else FEDMAX_CHANNELS)
        hidden = hidden if hidden is not None else (SMALL_HIDDEN if small else FEDMAX_HIDDEN)
        if not channels or min(channels) < 1 or hidden < 1 or num_classes < 1:
            raise ValueError(f"FedCNN: bad widths channels={channels}, hidden={hidden}, num_classes={num_classes}")
        layers: list[nn.Module] = []
        in_ch = c
        for stage, out_ch in enumerate(channels):
            for _ in range(1 if stage == 0 else 2):
                layers += [nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.ReLU(inplace=True)]
                in_ch = out_ch
            if h // 2 >= 2 and w // 2 >= 2:
                layers.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
        self.conv = nn.Sequential(*layers)
        self.fc = nn.Linear(in_ch * h * w, hidden)
        self.head = nn.Linear(hidden, num_classes)
        # He init for the ReLU layers: without batch norm, torch's default init shrinks
        # activations through the conv stack and training starts slowly.
        for layer in (*self.conv, self.fc):
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
        nn.init.zeros_(self.fc.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.fc(torch.flatten(self.conv(x), 1)))


class MLP(_FeatureModel):
    """Flatten -> fc ``hidden`` -> ReLU (the features) -> fc ``num_classes``."""

    def __init__(self, input_shape: Sequence[int], num_classes: int, hidden: int = 64) -> None:
        super().__init__()
        if hidden < 1 or num_classes < 1:
            raise ValueError(f"MLP: bad widths hidden={hidden}, num_classes={num_classes}")
        self.fc = nn.Linear(math.prod(_check_shape(input_shape)), hidden)
        self.head = nn.Linear(hidden, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.fc(torch.flatten(x, 1)))


def fedmax_cifar_cnn(input_shape: Sequence[int] = (3, 32, 32), num_classes: int = 10) -> FedCNN:
    """FedMAX's CIFAR-10 CNN (659,818 parameters at the default shape)."""
    return FedCNN(input_shape, num_classes, channels=FEDMAX_CHANNELS, hidden=FEDMAX_HIDDEN)


def build_model(name: str, input_shape: Sequence[int], num_classes: int, *, seed: int = 0, **kwargs: Any) -> nn.Module:
    """Build a model by its config name (``workload.model``), initialised from ``seed``.

    Initialisation runs under ``torch.random.fork_rng`` with only the CPU generator
    seeded, so torch's global RNG state is left untouched. ``kwargs`` go to the model
    (``channels``/``hidden`` for cnn, ``hidden`` for mlp).
    """
    builders = {"cnn": FedCNN, "fedmax_cifar_cnn": fedmax_cifar_cnn, "mlp": MLP}
    if name not in builders:
        raise ValueError(f"model.name={name!r}: allowed: {', '.join(MODEL_NAMES)}")
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        return builders[name](input_shape, num_classes, **kwargs)


def _check_shape(input_shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"input_shape={tuple(input_shape)}: must be (C, H, W) with positive sizes")
    return shape

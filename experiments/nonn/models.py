"""Wide residual networks (the NoNN teacher and the single-student baselines) and the NoNN
student network: a common first group, then one independent branch per student, each ending in
a 1x1 convolution to the size of its teacher partition; the aggregator's fully connected layer
takes the students' average-pooled outputs.

All models are pre-activation WRNs (Zagoruyko & Komodakis): group g has n = (depth - 4) / 6
basic blocks of width `widths[g]`, strides 1, 2, 2. `features` exposes what the losses need: the
output of every group (attention transfer) and the final ReLU(BN(.)) map, the paper's "fconv".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from experiments.common.metrics import count_params

__all__ = ["NoNN", "StudentSpec", "WRN", "scaled_widths", "wrn_blocks"]

BASE_WIDTHS = (16, 32, 64)  # WRN's group widths at width multiplier 1
STEM = 16


def wrn_blocks(depth: int) -> int:
    """Basic blocks per group of a WRN of `depth` (6n + 4 layers: n blocks of two convolutions per group)."""
    if depth < 10 or (depth - 4) % 6:
        raise ValueError(f"depth={depth}: a WRN has depth 6n + 4 with n >= 1 (10, 16, 22, 28, 40, ...)")
    return (depth - 4) // 6


def scaled_widths(multiplier: float) -> tuple[int, int, int]:
    """Group widths at a (possibly fractional) width multiplier, at least 1 channel each."""
    return tuple(max(1, round(w * multiplier)) for w in BASE_WIDTHS)


class Block(nn.Module):
    """Pre-activation basic block: BN-ReLU-conv3x3-BN-ReLU-conv3x3 plus the shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.shortcut = None if (c_in == c_out and stride == 1) else nn.Conv2d(c_in, c_out, 1, stride, 0, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = F.relu(self.bn1(x))
        y = self.conv1(o)
        y = self.conv2(F.relu(self.bn2(y)))
        return y + (x if self.shortcut is None else self.shortcut(o))


def group(c_in: int, c_out: int, n: int, stride: int) -> nn.Sequential:
    """`n` blocks to `c_out` channels, the first one with `stride`."""
    return nn.Sequential(*(Block(c_in if i == 0 else c_out, c_out, stride if i == 0 else 1) for i in range(n)))


class WRN(nn.Module):
    """WRN-depth with group widths `widths` (WRN-d-k: `scaled_widths(k)`)."""

    def __init__(self, depth: int, widths: tuple[int, int, int], in_channels: int, num_classes: int):
        super().__init__()
        n = wrn_blocks(depth)
        self.depth, self.widths = depth, tuple(widths)
        self.stem = nn.Conv2d(in_channels, STEM, 3, 1, 1, bias=False)
        self.groups = nn.ModuleList(
            [group(STEM, widths[0], n, 1), group(widths[0], widths[1], n, 2), group(widths[1], widths[2], n, 2)]
        )
        self.bn = nn.BatchNorm2d(widths[2])
        self.fc = nn.Linear(widths[2], num_classes)

    def features(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """(the output of each group, the fconv map ReLU(BN(last group)))."""
        outs, h = [], self.stem(x)
        for g in self.groups:
            h = g(h)
            outs.append(h)
        return outs, F.relu(self.bn(h))

    def head(self, fconv: torch.Tensor) -> torch.Tensor:
        return self.fc(fconv.mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)[1])


@dataclass(frozen=True)
class StudentSpec:
    """The NoNN student architecture: depth and group widths, and whether group 0 is shared."""

    depth: int
    widths: tuple[int, int, int]
    common_group: bool = True


class Branch(nn.Module):
    """One student after the common part: its own groups, then BN-ReLU, a 1x1 convolution to
    its partition's size, BN-ReLU (the map the activation-transfer loss compares)."""

    def __init__(self, spec: StudentSpec, out_channels: int, own_first_group: bool):
        super().__init__()
        n, w = wrn_blocks(spec.depth), spec.widths
        gs = [group(STEM, w[0], n, 1)] if own_first_group else []
        gs += [group(w[0], w[1], n, 2), group(w[1], w[2], n, 2)]
        self.groups = nn.Sequential(*gs)
        self.bn = nn.BatchNorm2d(w[2])
        self.project = nn.Conv2d(w[2], out_channels, 1, bias=False)
        self.bn_out = nn.BatchNorm2d(out_channels)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn_out(self.project(F.relu(self.bn(self.groups(h))))))


class NoNN(nn.Module):
    """k students over disjoint teacher partitions; `sizes[i]` = |P_i|.

    `common` (the stem, plus group 0 when shared) is replicated on every device at inference;
    `branches[i]` is student i's own part; `fc` runs at the aggregator on the concatenated,
    average-pooled student outputs.
    """

    def __init__(self, spec: StudentSpec, sizes: list[int], in_channels: int, num_classes: int):
        super().__init__()
        self.spec, self.sizes = spec, list(sizes)
        stem = nn.Conv2d(in_channels, STEM, 3, 1, 1, bias=False)
        if spec.common_group:
            self.common = nn.Sequential(stem, group(STEM, spec.widths[0], wrn_blocks(spec.depth), 1))
        else:
            self.common = nn.Sequential(stem)
        self.branches = nn.ModuleList([Branch(spec, s, not spec.common_group) for s in sizes])
        self.fc = nn.Linear(sum(sizes), num_classes)

    def student_maps(self, x: torch.Tensor, which: list[int] | None = None) -> list[torch.Tensor]:
        h = self.common(x)
        return [self.branches[i](h) for i in (range(len(self.branches)) if which is None else which)]

    def aggregate(self, pooled: list[torch.Tensor]) -> torch.Tensor:
        """The aggregator: concatenate the students' pooled features, apply the FC layer."""
        return self.fc(torch.cat(pooled, dim=1))

    def forward_with_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        maps = self.student_maps(x)
        return self.aggregate([m.mean(dim=(2, 3)) for m in maps]), maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_maps(x)[0]

    def student(self, i: int) -> nn.Module:
        """Student i as deployed on a device: the common part (replicated) and its branch."""
        return nn.Sequential(self.common, self.branches[i])

    def student_params(self, i: int) -> int:
        """Parameters student i stores on its device: the replicated common part and its branch."""
        return count_params(self.common) + count_params(self.branches[i])

"""Sizing NoNN students to a per-device memory and FLOP budget.

A student as deployed is the common part (replicated) plus its own branch; its memory is its
parameters times the bytes each parameter takes (8-bit quantised by default), and its FLOPs are
what PyTorch's FlopCounterMode counts for one image through it (`experiments.common.flops`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from experiments.common.flops import count_flops
from experiments.common.metrics import count_params
from experiments.common.torchdev import device_of

from .models import WRN, NoNN, StudentSpec, scaled_widths

__all__ = ["StudentCost", "WIDTH_CANDIDATES", "forward_flops", "match_width", "size_students", "student_costs"]

WIDTH_CANDIDATES = tuple(float(w) for w in np.arange(0.25, 4.0001, 0.125))


def forward_flops(module: torch.nn.Module, x: torch.Tensor) -> int:
    """FLOPs (PyTorch's count: 2 per multiply-accumulate) of one inference of `module` on `x`
    (moved where the module is): in eval mode, without gradients; the module's mode is restored after."""
    x = x.to(device_of(module))
    was = module.training
    module.eval()
    try:
        with torch.no_grad():
            _, flops = count_flops(lambda: module(x))
    finally:
        module.train(was)
    return flops


@dataclass(frozen=True)
class StudentCost:
    """One student as deployed (common part and its branch) against the per-device budgets."""

    student: int
    partition_size: int
    params: int
    memory_bytes: int
    flops: int
    memory_budget_bytes: int
    flop_budget: float

    @property
    def fits(self) -> bool:
        return self.memory_bytes <= self.memory_budget_bytes and self.flops <= self.flop_budget


def student_costs(
    model: NoNN, input_shape: tuple[int, int, int], bytes_per_param: float, memory_budget_bytes: int, flop_budget: float
) -> list[StudentCost]:
    """Each student's parameters, memory and FLOPs per image, against the budgets."""
    x = torch.zeros(1, *input_shape)
    return [
        StudentCost(
            i,
            s,
            model.student_params(i),
            int(np.ceil(model.student_params(i) * bytes_per_param)),
            forward_flops(model.student(i), x),
            int(memory_budget_bytes),
            float(flop_budget),
        )
        for i, s in enumerate(model.sizes)
    ]


def size_students(
    depth: int,
    sizes: list[int],
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    memory_budget_bytes: int,
    bytes_per_param: float,
    flop_budget: float,
    common_group: bool = True,
    width: float | None = None,
) -> tuple[StudentSpec, float, list[StudentCost]]:
    """The widest student (width multiplier from WIDTH_CANDIDATES) whose every student meets both
    budgets; with `width` given, that width. Returns (spec, width, costs); when nothing fits,
    the narrowest candidate, with costs that show by how much it misses (`fits` False)."""

    def build(w: float) -> tuple[StudentSpec, list[StudentCost]]:
        spec = StudentSpec(depth, scaled_widths(w), common_group)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # the weights do not matter for sizing
            model = NoNN(spec, sizes, input_shape[0], num_classes)
        return spec, student_costs(model, input_shape, bytes_per_param, memory_budget_bytes, flop_budget)

    if width is not None:
        spec, costs = build(width)
        return spec, width, costs
    chosen = None
    for w in WIDTH_CANDIDATES:  # params and FLOPs grow with the width: stop at the first miss
        spec, costs = build(w)
        if not all(c.fits for c in costs):
            break
        chosen = (spec, w, costs)
    if chosen is None:
        w = WIDTH_CANDIDATES[0]
        spec, costs = build(w)
        return spec, w, costs
    return chosen


def match_width(depth: int, target_params: int, in_channels: int, num_classes: int) -> float:
    """The WRN width multiplier whose parameter count is closest to `target_params` (the single
    baseline student of a size comparable to the whole NoNN)."""
    with torch.random.fork_rng(devices=[]):
        counts = [
            (abs(count_params(WRN(depth, scaled_widths(w), in_channels, num_classes)) - target_params), w)
            for w in WIDTH_CANDIDATES
        ]
    return min(counts)[1]

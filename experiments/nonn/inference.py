"""One NoNN inference, computed for real: what it costs (FLOPs and payload bytes, counted on the
real models), the pooled features the students send, and the aggregator's predictions from the
features that arrived (corrupted, or missing ones as zeros).

No clock: `sim.nonn.timeline` decides when each part happens and what it costs in time and energy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from experiments.common.torchdev import device_of

from .budget import forward_flops
from .models import NoNN

__all__ = [
    "FLOAT_BYTES",
    "InferencePlan",
    "features_accuracy",
    "inference_plan",
    "pooled_features",
    "predict",
    "single_model_plan",
    "student_features",
]

FLOAT_BYTES = 4  # a float32 feature or logit on the wire


@dataclass(frozen=True)
class InferencePlan:
    """What one NoNN inference costs, from the real models: FLOPs of the common part (run once
    per device) and of each student's branch, bytes of the input image and of each student's
    pooled features, FLOPs of the aggregator's FC layer."""

    common_flops: int
    branch_flops: tuple[int, ...]
    image_bytes: int
    feature_bytes: tuple[int, ...]
    fc_flops: int


def inference_plan(model: NoNN, input_shape: Sequence[int]) -> InferencePlan:
    """The plan of one image of `input_shape` through the NoNN `model` (where the model is)."""
    device = device_of(model)
    x = torch.zeros(1, *input_shape, device=device)
    h = model.common(x)
    pooled = torch.zeros(1, sum(model.sizes), device=device)
    return InferencePlan(
        forward_flops(model.common, x),
        tuple(forward_flops(b, h) for b in model.branches),
        int(x.numel() * x.element_size()),
        tuple(s * FLOAT_BYTES for s in model.sizes),
        forward_flops(model.fc, pooled),
    )


def single_model_plan(model: nn.Module, input_shape: Sequence[int], num_classes: int) -> InferencePlan:
    """`model` whole on one device (no common part, no FC at the aggregator): the device
    receives the image and sends back its logits."""
    x = torch.zeros(1, *input_shape)
    return InferencePlan(
        0, (forward_flops(model, x),), int(x.numel() * x.element_size()), (num_classes * FLOAT_BYTES,), 0
    )


@torch.no_grad()
def pooled_features(model: NoNN, x: torch.Tensor) -> list[np.ndarray]:
    """Each student's pooled features on `x`, as the float32 arrays a device would send."""
    return [m.mean(dim=(2, 3)).cpu().numpy().astype(np.float32) for m in model.student_maps(x.to(device_of(model)))]


@torch.no_grad()
def student_features(model: NoNN, image: np.ndarray, students: Sequence[int]) -> dict[int, np.ndarray]:
    """Student -> its pooled features on one (possibly corrupted) float32 `image` of shape
    (1, C, H, W): what a device computes on the copy of the image it received. Flipped bits may
    make values overflow or NaN: that is the point, and not warned about."""
    with np.errstate(over="ignore", invalid="ignore"):
        maps = model.student_maps(torch.from_numpy(image).to(device_of(model)), list(students))
    return {s: m.mean(dim=(2, 3))[0].cpu().numpy().astype(np.float32) for s, m in zip(students, maps)}


@torch.no_grad()
def predict(model: NoNN, pooled: list[np.ndarray]) -> np.ndarray:
    """The aggregator's class per image from the students' pooled features (one array each)."""
    device = device_of(model)
    return (
        model.aggregate([torch.from_numpy(np.ascontiguousarray(p)).to(device) for p in pooled]).argmax(1).cpu().numpy()
    )


def features_accuracy(model: NoNN, pooled: list[np.ndarray], y: np.ndarray) -> float:
    """Accuracy of the aggregator's predictions from `pooled` against the labels `y`."""
    with np.errstate(over="ignore", invalid="ignore"):
        return float(np.mean(predict(model, pooled) == y))

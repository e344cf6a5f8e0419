"""Train the offload example's classifier and run it on images as a sensor sends them.

An image travels as its 64 raw pixel values (one byte each, 0..16, what the digits' sensor
measured); a bit error turns a pixel into another byte, which the receiver decodes as it is.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from experiments.common.torchdev import device_of

__all__ = ["PIXEL_LEVELS", "decode_images", "encode_images", "predict", "train_classifier"]

PIXEL_LEVELS = 16.0  # the digits' pixels are integers 0..16, scaled to [0, 1] by this


def train_classifier(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int, lr: float, batch_size: int, seed: int
) -> dict:
    """Train `model` in place with SGD (momentum 0.9) on (x, y), minibatches shuffled from
    `seed`; returns its metadata: the last minibatch's loss."""
    order_gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    model.train()
    loss = torch.zeros(())
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=order_gen)
        for start in range(0, len(y), batch_size):
            batch = order[start : start + batch_size]
            opt.zero_grad()
            loss = F.cross_entropy(model(x[batch]), y[batch])
            loss.backward()
            opt.step()
    return {"final_loss": loss.item()}


def predict(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    """The class `model` gives each image of `x` (int64), computed where the model is."""
    model.eval()
    with torch.no_grad():
        return model(x.to(device_of(model))).argmax(1).cpu().numpy()


def encode_images(x: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) images in [0, 1] -> (N, C*H*W) uint8: the pixel bytes a sensor sends."""
    return (x * PIXEL_LEVELS).round().to(torch.uint8).reshape(len(x), -1).numpy().copy()


def decode_images(payload: np.ndarray, shape: tuple[int, ...]) -> torch.Tensor:
    """The inverse of `encode_images`: what the receiver feeds the model, bytes as they arrived."""
    pixels = torch.from_numpy(payload.astype(np.float32))
    return (pixels / PIXEL_LEVELS).reshape(len(payload), *shape)

"""The images a student can be distilled from, besides dreams: random noise, an alternate set
of natural images that ships offline, and (the upper bound) the real training images.

The alternate set: random square patches of the two photographs scikit-learn ships
(`load_sample_images`: a Chinese temple and a flower, 427x640 RGB), each patch 1/16 to 1/4 of
the shorter side, averaged down to the data's size, grey (the mean of R, G, B) for one-channel
data, and stretched to the pixel range [0, 1]. Natural images, none of them a digit: the
counterpart of the paper's CIFAR-100 for CIFAR-10.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["SOURCES", "alternate_images", "random_images"]

SOURCES = ("random", "dream", "alternate", "real")


def random_images(n: int, shape: tuple[int, ...], rng: np.random.Generator) -> torch.Tensor:
    """Uniform noise over the pixel range."""
    return torch.as_tensor(rng.random((n, *shape), dtype=np.float32))


def alternate_images(n: int, shape: tuple[int, ...], rng: np.random.Generator) -> torch.Tensor:
    """`n` patches of scikit-learn's sample photographs, at `shape` (channels, height, width)."""
    from sklearn.datasets import load_sample_images

    photos = [torch.tensor(img, dtype=torch.float32).permute(2, 0, 1) / 255.0 for img in load_sample_images().images]
    c, h, w = shape
    out = torch.empty((n, c, h, w))
    for i in range(n):
        photo = photos[rng.integers(len(photos))]
        side = min(photo.shape[1:])
        size = int(rng.integers(side // 16, side // 4 + 1))
        top, left = (int(rng.integers(dim - size + 1)) for dim in photo.shape[1:])
        patch = photo[:, top : top + size, left : left + size]
        if rng.random() < 0.5:
            patch = patch.flip(2)
        patch = F.adaptive_avg_pool2d(patch[None], (h, w))[0]
        patch = patch.mean(0, keepdim=True).expand(c, h, w) if c != 3 else patch
        lo, hi = patch.min(), patch.max()
        out[i] = (patch - lo) / (hi - lo) if hi > lo else patch * 0
    return out

"""Dream generation: target activations drawn around the metadata's centroids along their
principal directions, then images optimised from noise until the teacher's average-pool
activations of each match its target. Reads the metadata and the teacher only: no image of
the data owner's (`sim.dream.job` runs it under `experiments.dream.guard.sealed`).

The image priors (all optional, each a setting): the pixel range of the data format ([0, 1],
as every loader here scales pixels), a total-variation penalty (neighbouring pixels alike:
natural images are smooth, and without it the optimiser finds high-frequency patterns that
excite the teacher but carry no shape), an L2 penalty (no pixel driven to the range's edges
to push an activation), and random jitter (the image shifted by up to `jitter` pixels each step,
so that a pattern must work wherever it lands, as a real digit would).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from experiments.common.torchdev import device_of

from .metadata import Metadata, pooled_activations

__all__ = ["Priors", "dream_images", "dream_targets", "total_variation"]


@dataclass(frozen=True)
class Priors:
    """The image priors a dream's optimisation adds to its loss."""

    tv: float = 0.0  # weight of the total variation
    l2: float = 0.0  # weight of the mean squared pixel
    jitter: int = 0  # pixels of random shift per step


def dream_targets(meta: Metadata, n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`n` (target activation, class): classes in turn, a cluster drawn by its size, the
    centroid plus Gaussian noise of `noise` standard deviations along each principal direction."""
    labels = np.arange(n) % meta.classes
    rng.shuffle(labels)
    targets = np.empty((n, meta.centroids.shape[2]), np.float32)
    for i, c in enumerate(labels):
        weights = meta.counts[c] / max(1, meta.counts[c].sum())
        j = rng.choice(len(weights), p=weights)
        z = rng.standard_normal(meta.components.shape[2]) * noise * meta.spreads[c, j]
        targets[i] = meta.centroids[c, j] + z @ meta.components[c, j]
    return targets, labels.astype(np.int64)


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of neighbouring pixels, per image, averaged."""
    dh = (x[..., 1:, :] - x[..., :-1, :]).pow(2).mean(dim=(1, 2, 3))
    dw = (x[..., :, 1:] - x[..., :, :-1]).pow(2).mean(dim=(1, 2, 3))
    return (dh + dw).mean()


def dream_images(
    teacher: torch.nn.Module,
    targets: np.ndarray,
    shape: tuple[int, ...],
    steps: int,
    lr: float,
    priors: Priors,
    seed: int,
    batch: int = 256,
) -> tuple[torch.Tensor, float]:
    """Images whose teacher average-pool activations match `targets`, optimised with Adam
    from uniform noise for `steps` steps, `batch` images at a time; and the final mean squared
    activation error (relative to the targets' mean square). Optimised where the teacher is,
    from noise and shifts drawn on the CPU; the images on the CPU."""
    gen = torch.Generator().manual_seed(seed)
    device = device_of(teacher)
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    out, err, scale = [], 0.0, float(np.mean(targets**2)) or 1.0
    try:
        for start in range(0, len(targets), batch):
            t = torch.as_tensor(targets[start : start + batch])
            t_on = t.to(device)
            x = torch.rand((len(t), *shape), generator=gen).to(device).requires_grad_(True)
            opt = torch.optim.Adam([x], lr=lr)
            for _ in range(steps):
                view = x
                if priors.jitter:
                    dy, dx = (int(v) for v in torch.randint(-priors.jitter, priors.jitter + 1, (2,), generator=gen))
                    view = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
                act = teacher.features(view)[1].mean(dim=(2, 3))
                loss = (act - t_on).pow(2).mean()
                if priors.tv:
                    loss = loss + priors.tv * total_variation(x)
                if priors.l2:
                    loss = loss + priors.l2 * x.pow(2).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                with torch.no_grad():
                    x.clamp_(0.0, 1.0)  # the data format's pixel range
            x = x.detach()
            err += float((pooled_activations(teacher, x) - t).pow(2).sum()) / t.shape[1]
            out.append(x.cpu())
    finally:
        for p in teacher.parameters():
            p.requires_grad_(True)
    return torch.cat(out), err / len(targets) / scale

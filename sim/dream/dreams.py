"""The dream images of a teacher, from either side of the wall: the data owner summarises a
sample of its images as metadata (`owner_metadata`); the compressing server, sealed from those
images, optimises dreams to match it (`make_dreams`, cached). Shared by the dream workload and
NoNN's `workload.data=dream`: the same settings, seed and teacher give the same dreams (one
cache entry)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from experiments.common.cache import cache_key, save_torch
from experiments.dream.generate import Priors, dream_images, dream_targets
from experiments.dream.guard import RealImages, sealed
from experiments.dream.metadata import Metadata, teacher_metadata
from sim.dream.settings import DreamGeneration
from sim.meter import WorkMeter
from sim.seeding import stream

__all__ = ["Dreams", "dreams_of", "make_dreams", "owner_metadata"]

_GENERATION = ("noise", "steps", "dream_lr", "tv_weight", "l2_weight", "jitter")


def owner_metadata(g: DreamGeneration, seed: int, teacher, real: RealImages, classes: int):
    """The data owner's side: (the sample of its images, their labels, the teacher's metadata on them)."""
    size = max(classes, round(len(real) * g.sample_fraction))
    pick = torch.as_tensor(np.sort(stream(seed, "dream-sample").permutation(len(real))[:size]))
    sample_x, sample_y = real.x[pick], real.y[pick]
    meta = teacher_metadata(teacher, sample_x, sample_y, classes, g.clusters, g.components, seed)
    return sample_x, sample_y, meta


def make_dreams(
    g: DreamGeneration,
    seed: int,
    cache_dir,
    torch_threads,
    teacher,
    teacher_key: dict,
    meta: Metadata,
    n: int,
    shape,
    torch_device: str = "cpu",
) -> tuple[torch.Tensor, dict]:
    """`n` dream images (cached under `cache_dir`) and what making them cost: `flops` (the
    meter's count), `activation_error` (how far the teacher's activations stay from the
    targets), `labels` (the class of each dream's target). Optimised where the teacher is
    (`torch_device`, which the cache key names)."""
    key = {
        "teacher": teacher_key,
        "metadata": [g.sample_fraction, g.clusters, g.components],
        "n": n,
        **{k: getattr(g, k) for k in _GENERATION},
        "seed": seed,
    }
    path = Path(cache_dir) / f"dreams-{cache_key(key, torch_threads, torch_device)}.pt" if cache_dir else None
    if path is not None and path.exists():
        blob = torch.load(path, weights_only=True)
        return blob["images"], dict(blob["stats"])
    targets, labels = dream_targets(meta, n, g.noise, stream(seed, "dream-targets"))
    priors = Priors(tv=g.tv_weight, l2=g.l2_weight, jitter=g.jitter)
    image_seed = int(stream(seed, "dream-images").integers(2**31))
    with WorkMeter() as meter:
        images, err = dream_images(teacher, targets, shape, g.steps, g.dream_lr, priors, image_seed)
    stats = {"flops": int(meter.flops), "activation_error": float(err), "labels": labels.tolist()}
    if path is not None:
        save_torch({"images": images, "stats": stats, "key": key}, path)
    return images, stats


@dataclass(frozen=True)
class Dreams:
    """A teacher's dreams and the owner's side of them."""

    images: torch.Tensor
    labels: torch.Tensor  # the class of each dream's target
    stats: dict  # flops, activation_error, labels
    meta: Metadata
    sample_x: torch.Tensor
    sample_y: torch.Tensor


def dreams_of(
    g: DreamGeneration,
    seed: int,
    cache_dir,
    torch_threads,
    teacher,
    teacher_key,
    real,
    classes,
    shape,
    torch_device: str = "cpu",
):
    """The owner's metadata from `real` (a `RealImages`), then the dreams made from it alone,
    sealed from `real`: as many as `g.images`, or as the owner has training images (where the
    teacher is: `torch_device`)."""
    sample_x, sample_y, meta = owner_metadata(g, seed, teacher, real, classes)
    n = g.images or len(real)
    with sealed():
        images, stats = make_dreams(
            g, seed, cache_dir, torch_threads, teacher, teacher_key, meta, n, shape, torch_device
        )
    return Dreams(images, torch.as_tensor(stats["labels"]), stats, meta, sample_x, sample_y)

"""What leaves the data owner: per class, k-means clusters of the teacher's average-pool
activations on a sample of the real training images, each cluster's centroid, its principal
directions and the spread along them. Means and directions only, never an image's activation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.cluster import KMeans

from experiments.common.torchdev import device_of

__all__ = ["Metadata", "pooled_activations", "teacher_metadata"]


@dataclass(frozen=True)
class Metadata:
    """Per class c and cluster j: `centroids[c, j]` (D,), `components[c, j]` (p, D) unit rows,
    `spreads[c, j]` (p,) the standard deviation along each, `counts[c, j]` its images (0: an
    empty slot, for a class with fewer images than clusters)."""

    centroids: np.ndarray
    components: np.ndarray
    spreads: np.ndarray
    counts: np.ndarray

    @property
    def nbytes(self) -> int:
        """Its size as sent: float32 means, directions and spreads, int32 counts."""
        floats = self.centroids.size + self.components.size + self.spreads.size
        return 4 * floats + 4 * self.counts.size

    @property
    def classes(self) -> int:
        return self.centroids.shape[0]


@torch.no_grad()
def pooled_activations(teacher: torch.nn.Module, x: torch.Tensor, batch: int = 512) -> torch.Tensor:
    """The teacher's average-pool activations (its final feature map averaged over space),
    computed where the teacher is, on the CPU."""
    teacher.eval()
    device = device_of(teacher)
    return torch.cat(
        [teacher.features(x[i : i + batch].to(device))[1].mean(dim=(2, 3)).cpu() for i in range(0, len(x), batch)]
    )


def teacher_metadata(
    teacher: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, classes: int, clusters: int, components: int, seed: int
) -> Metadata:
    """The metadata of `teacher` on the real images `x` (labels `y`): `clusters` k-means
    clusters per class, `components` principal directions per cluster."""
    feats = pooled_activations(teacher, x).double().numpy()
    labels = y.numpy()
    d = feats.shape[1]
    cent = np.zeros((classes, clusters, d))
    comp = np.zeros((classes, clusters, components, d))
    spread = np.zeros((classes, clusters, components))
    counts = np.zeros((classes, clusters), np.int64)
    for c in range(classes):
        fc = feats[labels == c]
        k = min(clusters, len(fc))
        if k == 0:
            continue
        assign = KMeans(k, n_init=4, random_state=seed).fit(fc).labels_
        for j in range(k):
            members = fc[assign == j]
            cent[c, j] = members.mean(axis=0)
            counts[c, j] = len(members)
            if len(members) > 1:
                _, s, vt = np.linalg.svd(members - cent[c, j], full_matrices=False)
                p = min(components, len(s))
                comp[c, j, :p] = vt[:p]
                spread[c, j, :p] = s[:p] / np.sqrt(len(members) - 1)
    f32 = np.float32
    return Metadata(cent.astype(f32), comp.astype(f32), spread.astype(f32), counts.astype(np.int32))

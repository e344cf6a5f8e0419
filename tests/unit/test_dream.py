"""Dream Distillation's pieces: the metadata, the targets, the generation's priors, the sources,
the guard on the real images, the settings."""

import numpy as np
import pytest
import torch

from experiments.dream.generate import Priors, dream_images, dream_targets, total_variation
from experiments.dream.guard import RealImageAccess, RealImages, sealed
from experiments.dream.metadata import pooled_activations, teacher_metadata
from experiments.dream.sources import alternate_images, random_images
from experiments.nonn.models import WRN, scaled_widths
from sim.config import ConfigError
from sim.jobs import default_config, validate


def _teacher() -> WRN:
    torch.manual_seed(0)
    return WRN(10, scaled_widths(0.5), 1, 3).eval()


def _data(n=60):
    g = torch.Generator().manual_seed(1)
    return torch.rand((n, 1, 8, 8), generator=g), torch.arange(n) % 3


def test_metadata_summarises_each_class_by_clusters_and_directions():
    teacher, (x, y) = _teacher(), _data()
    meta = teacher_metadata(teacher, x, y, classes=3, clusters=4, components=2, seed=0)
    d = pooled_activations(teacher, x).shape[1]
    assert meta.centroids.shape == (3, 4, d) and meta.components.shape == (3, 4, 2, d)
    assert meta.counts.sum(axis=1).tolist() == [20, 20, 20]
    norms = np.linalg.norm(meta.components, axis=-1)
    assert np.allclose(norms[meta.spreads > 0], 1.0, atol=1e-5)
    assert meta.nbytes == 4 * (3 * 4 * d + 3 * 4 * 2 * d + 3 * 4 * 2 + 3 * 4)
    feats = pooled_activations(teacher, x).numpy()
    for c in range(3):  # the counts-weighted centroids give back each class's mean activation
        mean = (meta.centroids[c] * meta.counts[c][:, None]).sum(0) / meta.counts[c].sum()
        assert np.allclose(mean, feats[y.numpy() == c].mean(0), atol=1e-4)


def test_targets_without_noise_are_centroids_and_classes_take_turns():
    teacher, (x, y) = _teacher(), _data()
    meta = teacher_metadata(teacher, x, y, classes=3, clusters=2, components=2, seed=0)
    targets, labels = dream_targets(meta, 30, 0.0, np.random.default_rng(0))
    assert np.bincount(labels).tolist() == [10, 10, 10]
    for t, c in zip(targets, labels):
        assert any(np.allclose(t, meta.centroids[c, j]) for j in range(2))


def test_generation_moves_the_activations_to_their_targets():
    teacher, (x, y) = _teacher(), _data()
    meta = teacher_metadata(teacher, x, y, classes=3, clusters=2, components=2, seed=0)
    targets, _ = dream_targets(meta, 12, 1.0, np.random.default_rng(0))
    _, err0 = dream_images(teacher, targets, (1, 8, 8), steps=0, lr=0.1, priors=Priors(), seed=0)
    images, err = dream_images(teacher, targets, (1, 8, 8), steps=40, lr=0.05, priors=Priors(), seed=0)
    assert err < 0.5 * err0
    assert images.shape == (12, 1, 8, 8) and 0.0 <= images.min() and images.max() <= 1.0
    assert all(p.requires_grad for p in teacher.parameters())  # the teacher is left as it was


def test_total_variation_prior_smooths():
    flat = torch.full((2, 1, 8, 8), 0.5)
    assert float(total_variation(flat)) == 0.0
    teacher, (x, y) = _teacher(), _data()
    meta = teacher_metadata(teacher, x, y, classes=3, clusters=2, components=2, seed=0)
    targets, _ = dream_targets(meta, 8, 1.0, np.random.default_rng(0))
    rough, _ = dream_images(teacher, targets, (1, 8, 8), steps=30, lr=0.05, priors=Priors(), seed=0)
    smooth, _ = dream_images(teacher, targets, (1, 8, 8), steps=30, lr=0.05, priors=Priors(tv=10.0), seed=0)
    assert float(total_variation(smooth)) < float(total_variation(rough))


def test_sources_are_images_in_the_pixel_range():
    for make in (random_images, alternate_images):
        imgs = make(20, (1, 8, 8), np.random.default_rng(0))
        assert imgs.shape == (20, 1, 8, 8) and imgs.min() >= 0 and imgs.max() <= 1
    rgb = alternate_images(3, (3, 16, 16), np.random.default_rng(0))
    assert rgb.shape == (3, 3, 16, 16)


def test_real_images_cannot_be_read_while_sealed():
    real = RealImages(torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.long))
    assert real.x.shape[0] == 4 and len(real) == 4
    with sealed(), pytest.raises(RealImageAccess):
        _ = real.x
    with sealed(), pytest.raises(RealImageAccess):
        _ = real.y
    assert real.y.shape[0] == 4  # unsealed again


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("clusters", 0),
        ("components", 0),
        ("sample_fraction", 1.0),
        ("steps", 0),
        ("images", 0),
        ("noise", -1.0),
        ("student_widths", []),
        ("sources", ["dreams"]),
        ("sources", ["real", "real"]),
        ("owner", "nosuch"),
        ("student_depth", 12),
        ("jitter", -1),
    ],
)
def test_bad_settings_name_the_setting(key, value):
    cfg = default_config("dream")
    setattr(cfg.workload, key, value)
    with pytest.raises(ConfigError, match=rf"^workload\.{key}="):
        validate(cfg)

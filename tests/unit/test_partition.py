"""Tests for experiments.federated.partition."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.common.data import load_digits
from experiments.federated.partition import partition_indices


@pytest.fixture(scope="module")
def digits_labels() -> np.ndarray:
    return load_digits(seed=0).y_train.numpy()


def _entropy(labels: np.ndarray) -> float:
    p = np.bincount(labels, minlength=10) / len(labels)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


@pytest.mark.parametrize("scheme", ["iid", "dirichlet", "shards"])
def test_covers_each_sample_once_sorted_nonempty(digits_labels: np.ndarray, scheme: str) -> None:
    parts = partition_indices(digits_labels, 100, scheme, seed=0)
    assert len(parts) == 100
    for p in parts:
        assert p.dtype == np.int64 and len(p) >= 1 and np.all(np.diff(p) > 0)
    joined = np.concatenate(parts)
    assert np.array_equal(np.sort(joined), np.arange(len(digits_labels)))


def test_balanced_sizes(digits_labels: np.ndarray) -> None:
    # 1437 samples over 100 clients; shards: 200 shards of 7 or 8 samples, two each.
    assert {len(p) for p in partition_indices(digits_labels, 100, "iid", seed=0)} == {14, 15}
    assert {len(p) for p in partition_indices(digits_labels, 100, "shards", seed=0)} <= {14, 15, 16}


@pytest.mark.parametrize("scheme", ["iid", "dirichlet", "shards"])
def test_seeded(digits_labels: np.ndarray, scheme: str) -> None:
    a = partition_indices(digits_labels, 20, scheme, seed=5)
    b = partition_indices(digits_labels, 20, scheme, seed=5)
    c = partition_indices(digits_labels, 20, scheme, seed=6)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_shards_have_few_labels(digits_labels: np.ndarray) -> None:
    parts = partition_indices(digits_labels, 100, "shards", seed=0, shards_per_client=2)
    distinct = np.array([len(np.unique(digits_labels[p])) for p in parts])
    assert distinct.max() <= 4 and distinct.mean() <= 3.0
    iid = partition_indices(digits_labels, 100, "iid", seed=0)
    assert distinct.mean() < np.mean([len(np.unique(digits_labels[p])) for p in iid]) - 3


def test_shards_with_fewer_samples_than_shards() -> None:
    labels = np.repeat(np.arange(5), 3)  # 15 samples, 10 clients x 2 shards: shards of one image, not label-sorted
    with pytest.raises(ValueError, match=r"dataset.shards_per_client=2: 10 devices x 2 shards exceed the 15"):
        partition_indices(labels, 10, "shards", seed=1)
    parts = partition_indices(labels, 7, "shards", seed=1)  # 14 shards of one or two images: every image dealt
    assert min(len(p) for p in parts) >= 1
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(15))


def test_dirichlet_alpha_controls_skew(digits_labels: np.ndarray) -> None:
    def mean_entropy(alpha: float) -> float:
        parts = partition_indices(digits_labels, 20, "dirichlet", seed=0, alpha=alpha)
        return float(np.mean([_entropy(digits_labels[p]) for p in parts]))

    skewed, mild = mean_entropy(0.1), mean_entropy(100.0)
    assert skewed < 1.2 < 2.0 < mild <= np.log(10)


def test_dirichlet_tiny_alpha_keeps_every_client_nonempty() -> None:
    labels = np.random.default_rng(0).integers(0, 10, 200)
    for alpha in (1e-3, 0.05):
        parts = partition_indices(labels, 100, "dirichlet", seed=0, alpha=alpha)
        assert min(len(p) for p in parts) >= 1
        assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(200))


def test_errors() -> None:
    labels = np.arange(10) % 2
    with pytest.raises(ValueError, match=r"dataset.partition='x': allowed: dirichlet, iid, sampled, shards"):
        partition_indices(labels, 2, "x", seed=0)
    for alpha in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="dataset.alpha"):
            partition_indices(labels, 2, "dirichlet", seed=0, alpha=alpha)
    with pytest.raises(ValueError, match="dataset.num_clients=11"):
        partition_indices(labels, 11, "iid", seed=0)
    with pytest.raises(ValueError, match="dataset.num_clients=0"):
        partition_indices(labels, 0, "iid", seed=0)
    with pytest.raises(ValueError, match="dataset.shards_per_client"):
        partition_indices(labels, 2, "shards", seed=0, shards_per_client=0)

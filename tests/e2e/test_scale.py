"""Large fleets: partitions drawn only for the devices sampled, no per-device objects kept."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from experiments.federated.partition import SampledPartitions, partition_indices
from sim.config import ConfigError
from sim.jobs import run

from ..conftest import make_tiny_cfg


def test_sampled_partition_is_keyed_by_device_and_stores_nothing() -> None:
    parts = SampledPartitions(1797, 100_000, 16, seed=5)
    assert len(parts) == 100_000
    a = parts[99_999]
    assert a.dtype == np.int64 and len(a) == 16 and len(np.unique(a)) == 16
    assert (np.diff(a) > 0).all() and 0 <= a.min() and a.max() < 1797
    # the same indices whatever was asked before, and from a fresh object (another process)
    _ = parts[3], parts[7]
    assert np.array_equal(SampledPartitions(1797, 100_000, 16, seed=5)[99_999], a)
    assert not np.array_equal(parts[99_998], a)
    assert not np.array_equal(SampledPartitions(1797, 100_000, 16, seed=6)[99_999], a)
    assert vars(parts) == {"num_samples": 1797, "num_clients": 100_000, "size": 16, "seed": 5}
    with pytest.raises(IndexError):
        parts[100_000]


def test_sampled_partition_default_size_and_bad_sizes() -> None:
    assert SampledPartitions(1000, 10, None, seed=0).size == 100
    assert SampledPartitions(1000, 100_000, None, seed=0).size == 1
    with pytest.raises(ValueError, match="dataset.samples_per_device"):
        SampledPartitions(1000, 10, 1001, seed=0)


def test_eager_schemes_point_to_sampled_for_more_devices_than_samples() -> None:
    with pytest.raises(ValueError, match="partition=sampled"):
        partition_indices(np.zeros(5, dtype=int), 6, "iid", seed=0)


def test_a_fleet_larger_than_the_data_runs_with_sampled_partitions(tmp_path) -> None:
    cfg = make_tiny_cfg()
    cfg.fleet.num_devices = 5000  # more devices than digits' training samples
    cfg.strategy.fraction_train = 4 / 5000
    cfg.dataset.partition, cfg.dataset.samples_per_device = "sampled", 8
    summary = pd.DataFrame(run(cfg, tmp_path))
    clients = pd.read_csv(tmp_path / "clients.csv")
    assert summary["num_devices"].iloc[0] == 5000
    assert (clients.groupby("round").size() == 4).all()
    assert clients["node_id"].max() <= 5000


def test_iid_partition_refuses_more_devices_than_samples(tmp_path) -> None:
    cfg = make_tiny_cfg()
    cfg.fleet.num_devices = 5000
    with pytest.raises(ConfigError, match="partition=sampled"):
        run(cfg, tmp_path)
    assert not list(tmp_path.iterdir())

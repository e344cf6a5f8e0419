"""Asynchronous federated learning end to end: FedBuff and FedAsync beside FedAvg in one job,
a degenerate FedBuff that is FedAvg on the real workload, and a user's own asynchronous
ServerApp written against Flower's Grid API."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from sim.jobs import run

from ..conftest import make_tiny_cfg


def _cfg(**workload):
    cfg = make_tiny_cfg()
    cfg.fleet.num_devices = 8
    cfg.workload.rounds = 4
    for k, v in workload.items():
        setattr(cfg.workload, k, v)
    return cfg


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    cfg = _cfg()
    cfg.compare = ["fedavg", "fedbuff", "fedasync"]
    cfg.compared = {"fedbuff": {"concurrency": 4, "buffer_size": 2}, "fedasync": {"concurrency": 4}}
    out = tmp_path_factory.mktemp("async")
    run(cfg, out)
    return out


def test_one_job_compares_sync_and_async(compared) -> None:
    cmp = pd.read_csv(compared / "comparison.csv")
    assert cmp.strategy.tolist() == ["fedavg", "fedbuff", "fedasync"]
    for col in ("time_to_target_s", "energy_to_target_j", "bytes_to_target", "accuracy_at_equal_time"):
        assert col in cmp.columns
    assert cmp.equal_time_s.nunique() == 1 and cmp.equal_time_s.iloc[0] == cmp.sim_time_s.min()
    assert (cmp.rounds_run == 4).all()
    assert cmp.loc[cmp.strategy == "fedavg", "mean_staleness"].item() == 0.0
    assert cmp.loc[cmp.strategy != "fedavg", "max_staleness"].max() >= 1  # updates do go stale


def test_rounds_csv_has_a_row_per_server_version(compared) -> None:
    for name, per_version in (("fedbuff", 2), ("fedasync", 1)):
        rounds = pd.read_csv(compared / name / "rounds.csv")
        assert rounds["round"].tolist() == [1, 2, 3, 4]
        assert (rounds.updates_applied >= per_version).all()
        if name == "fedasync":
            assert (rounds.updates_applied == 1).all()
        assert rounds.sim_time_s.is_monotonic_increasing
        assert rounds.accuracy.notna().all() and (rounds.energy_j > 0).all()
        clients = pd.read_csv(compared / name / "clients.csv")
        received = clients[clients.status == "received"]
        assert len(received) == rounds.updates_applied.sum()
        assert received.age_s.tolist() == pytest.approx((received.arrival_s - received.dispatch_s).tolist(), abs=1e-6)
        assert received.staleness.notna().all() and clients[clients.status != "received"].staleness.isna().all()
        # each applied update counted in exactly one version, with its own staleness
        assert (rounds.updates_applied * rounds.mean_staleness).sum() == pytest.approx(received.staleness.sum())
        assert rounds.max_staleness.max() == received.staleness.max()


def test_degenerate_fedbuff_is_fedavg_on_the_real_workload(tmp_path) -> None:
    cfg = _cfg(rounds=3)
    cfg.fleet.mix = {"rpi3_400mhz": 1.0}
    cfg.fleet.spread = 0.0
    cfg.fleet.availability = 1.0
    cfg.strategy.fraction_train = 1.0
    cfg.strategy.timeout_s = None
    cfg.compare = ["fedavg", "fedbuff"]
    n = cfg.fleet.num_devices
    cfg.compared = {"fedbuff": {"concurrency": n, "buffer_size": n, "staleness": "constant", "server_lr": 1.0}}
    run(cfg, tmp_path)
    sync = pd.read_csv(tmp_path / "fedavg" / "rounds.csv")
    buff = pd.read_csv(tmp_path / "fedbuff" / "rounds.csv")
    assert buff.accuracy.tolist() == pytest.approx(sync.accuracy.tolist(), abs=1e-9)
    assert buff.loss.tolist() == pytest.approx(sync.loss.tolist(), rel=1e-5)
    # the same clock, but for the server's aggregation: FedBuff takes in the replies that come
    # first while waiting for the rest, FedAvg all of them at the end (microseconds apart here)
    assert buff.sim_time_s.tolist() == pytest.approx(sync.sim_time_s.tolist(), rel=1e-4)
    assert (buff.sim_time_s <= sync.sim_time_s).all()
    assert (buff.updates_applied == n).all() and (buff.max_staleness == 0).all()


def test_a_users_async_server_app_runs_unmodified(tmp_path) -> None:
    cfg = _cfg()
    cfg.fleet.num_devices = 6
    cfg.fleet.spread = 0.3
    cfg.strategy.timeout_s = None
    cfg.workload.app.server = "tests.async_app.server_app:app"
    cfg.workload.app.client = "tests.quickstart_app.client_app:app"
    cfg.workload.app.run_config = {
        "num-server-rounds": 6,
        "concurrency": 3,
        "mixing": 0.5,
        "lr": 0.1,
        "local-epochs": 1,
        "batch-size": 32,
    }
    summary = run(cfg, tmp_path)[0]
    rounds = pd.read_csv(tmp_path / "rounds.csv")
    clients = pd.read_csv(tmp_path / "clients.csv")
    assert rounds["round"].tolist() == [1, 2, 3, 4, 5, 6]  # a version per update the app took in
    assert (rounds.updates_applied == 1).all()
    assert summary["updates_applied"] == 6 and summary["max_staleness"] >= 1
    received = clients[clients.status == "received"]
    assert len(received) == 6 and received.staleness.notna().all()
    assert math.isnan(summary["final_accuracy"])  # the app evaluates nothing the grid can see

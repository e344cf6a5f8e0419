"""Client faults seen and counted: NaN weights kept out of aggregation (or let through, and the
model's collapse flagged), a ClientApp's exception in clients.csv and on the console once per
kind, memory a ClientApp takes outside torch, and the bytes of error reports on the air."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from sim.jobs import run

from ..conftest import make_tiny_cfg

SERVER = "tests.quickstart_app.server_app:app"


def _app_cfg(client: str, rounds: int = 3):
    cfg = make_tiny_cfg()
    cfg.plots = False
    cfg.fleet.num_devices = 4
    cfg.workload.app.server = SERVER
    cfg.workload.app.client = f"tests.fault_app.client_app:{client}"
    cfg.workload.app.run_config = {
        "num-server-rounds": rounds,
        "fraction-train": 1.0,
        "fraction-evaluate": 0.0,
        "lr": 0.1,
    }
    return cfg


def test_nan_weights_are_counted_and_kept_out(tmp_path) -> None:
    summary = run(_app_cfg("nan_app"), tmp_path)[0]
    clients = pd.read_csv(tmp_path / "clients.csv")
    rounds = pd.read_csv(tmp_path / "rounds.csv")
    train = clients[clients.phase == "train"]
    assert set(train.loc[train.node_id == 2, "status"]) == {"non_finite"}
    assert (train.loc[train.node_id != 2, "status"] == "received").all()
    assert rounds.clients_non_finite.tolist() == [1, 1, 1] and summary["clients_non_finite"] == 3
    assert rounds.model_finite.iloc[:2].tolist() == [True, True]  # the model the server sent next
    assert math.isnan(summary["collapsed_round"])


def test_nan_weights_let_through_collapse_the_model_and_say_when(tmp_path) -> None:
    cfg = _app_cfg("nan_app")
    cfg.workload.accept_non_finite = True
    summary = run(cfg, tmp_path)[0]
    rounds = pd.read_csv(tmp_path / "rounds.csv")
    assert rounds.clients_non_finite.sum() == 0
    assert rounds.model_finite.iloc[:2].tolist() == [False, False]
    assert summary["collapsed_round"] == 1


def test_a_raw_channel_collapse_is_flagged_on_the_built_in_workload(tmp_path) -> None:
    cfg = make_tiny_cfg()
    cfg.plots = False
    cfg.channel.mode, cfg.channel.ber = "raw", 1e-3
    cfg.workload.accept_non_finite = True
    unguarded = run(cfg, tmp_path / "unguarded")[0]
    assert unguarded["collapsed_round"] == 1
    cfg.workload.accept_non_finite = False
    guarded = run(cfg, tmp_path / "guarded")[0]
    assert guarded["clients_non_finite"] > 0 and math.isnan(guarded["collapsed_round"])
    rounds = pd.read_csv(tmp_path / "guarded" / "rounds.csv")
    assert rounds.model_finite.all()


def test_a_clientapps_exception_is_recorded_and_told_once(tmp_path, capsys) -> None:
    summary = run(_app_cfg("raising_app"), tmp_path)[0]
    clients = pd.read_csv(tmp_path / "clients.csv", keep_default_na=False)
    failed = clients[clients.node_id % 2 == 1]
    assert (failed.status == "error").all()
    assert (
        failed.error == failed.node_id.map(lambda n: f"ValueError: node {n} cannot train: its sensor is unplugged")
    ).all()
    assert (clients.loc[clients.node_id % 2 == 0, "error"] == "").all()
    err = capsys.readouterr().err
    assert err.count("the ClientApp failed") == 1  # the first of its kind; the rest are in clients.csv
    assert "warning: the ClientApp failed (round 1, node 1): ValueError: node 1 cannot train" in err
    assert summary["clients_lost"] == len(failed)


def test_memory_outside_torch_is_counted(tmp_path) -> None:
    run(_app_cfg("numpy_app", rounds=1), tmp_path / "torch_only")  # the default: torch's memory only
    assert (pd.read_csv(tmp_path / "torch_only" / "clients.csv").status == "received").all()
    cfg = _app_cfg("numpy_app", rounds=1)
    cfg.workload.app.python_memory = True
    cfg.fleet.mix = {"cortex_m7_512kb": 0.5, "rpi3_400mhz": 0.5}  # 512 KiB and 1 GiB devices
    run(cfg, tmp_path)
    clients = pd.read_csv(tmp_path / "clients.csv")
    assert (clients.peak_memory_bytes >= 64 * 2**20).all()
    small = clients[clients.device == "cortex_m7_512kb"]
    assert len(small) and (small.status == "out_of_memory").all()
    assert (clients[clients.device == "rpi3_400mhz"].status == "received").all()


def test_transfers_that_give_up_count_their_bytes_on_the_air(tmp_path) -> None:
    cfg = make_tiny_cfg()
    cfg.plots = False
    cfg.fleet.num_devices, cfg.workload.rounds = 12, 3
    cfg.channel.ber, cfg.channel.max_attempts = 3e-5, 2  # some messages lost each way
    run(cfg, tmp_path)
    clients = pd.read_csv(tmp_path / "clients.csv")
    lost_down, lost_up = clients[clients.status == "lost_down"], clients[clients.status == "lost_up"]
    assert len(lost_down) and len(lost_up)
    assert (lost_down.bytes_down > 0).all() and (lost_down.retransmissions > 0).all()
    assert (lost_up.bytes_up > 0).all() and (lost_up.attempts_up > 0).all()


@pytest.mark.parametrize("client", ["raising_app"])
def test_a_rerun_of_a_faulty_app_is_byte_identical(tmp_path, client) -> None:
    run(_app_cfg(client), tmp_path / "a")
    run(_app_cfg(client), tmp_path / "b")
    for name in ("clients.csv", "rounds.csv", "summary.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()

"""A value of the wrong type or a key that does not exist: one line naming the override as the
user wrote it, exit status 2, nothing written (Hydra alone gives several lines, exit 1, and a
run folder)."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("channel.ber=abc", "error: channel.ber=abc: Value 'abc' of type 'str' could not be converted to Float"),
        ("workload.rounds=2.5", "error: workload.rounds=2.5: Value '2.5' of type 'float' could not be converted"),
        ("chanel.ber=0.1", "error: chanel.ber=0.1: Key 'chanel' not in 'Config'"),
        ("fleet.num_devices=1e12", "error: fleet.num_devices=1e12: Value '1000000000000.0' of type 'float'"),
    ],
)
def test_wrong_type_or_unknown_key_is_one_line(override: str, message: str, run_sim, tmp_path):
    res = run_sim(override, "progress=false")
    assert res.returncode == 2
    [line] = res.stderr.strip().splitlines()
    assert line.startswith(message)
    assert list(tmp_path.iterdir()) == []


def test_the_same_in_a_workloads_own_section(run_sim, tmp_path):
    res = run_sim("+experiment=nonn", "workload.lr=abc")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "error: workload.lr=abc: Value 'abc' of type 'str' could not be converted to Float"
    ]


def test_a_transfer_that_gives_up_still_counts_its_bytes_on_the_air(run_sim, tmp_path):
    import pandas as pd

    out = tmp_path / "r"
    tiny = ["workload.rounds=1", "workload.model=mlp", "fleet.num_devices=4", "progress=false", "plots=false"]
    res = run_sim(*tiny, "channel.ber=3e-3", f"hydra.run.dir={out}")
    assert res.returncode == 0, res.stderr[-1500:]
    clients = pd.read_csv(out / "clients.csv")
    lost = clients[clients["status"] == "lost_down"]
    assert len(lost) and (lost["attempts_down"] >= 8).all()
    # every attempt went out with its header: at least attempts x (header + some payload) bytes
    assert (lost["bytes_down"] >= lost["attempts_down"] * 17).all()
    rounds = pd.read_csv(out / "rounds.csv")
    assert rounds["bytes_down"].sum() == clients["bytes_down"].sum()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["workload.momentum=-1"], "error: workload.momentum=-1.0: allowed range is [0, 1)"),
        (["workload.lr_decay=-1"], "error: workload.lr_decay=-1.0: allowed range is (0, 1]"),
        (["workload.weight_decay=-1"], "error: workload.weight_decay=-1.0: must be >= 0"),
        (["workload.model=nosuch"], "error: workload.model='nosuch': allowed: cnn, fedmax_cifar_cnn, mlp"),
        (["seed=-1"], "error: seed=-1: allowed range is 0 .. 2**32 - 1"),
        (["seed=4294967296"], "error: seed=4294967296: allowed range is 0 .. 2**32 - 1"),
        (["log_level=FOO"], "error: log_level='FOO': allowed: DEBUG, INFO"),
        (
            ["dataset.partition=shards", "dataset.shards_per_client=100000"],
            "error: dataset.shards_per_client=100000: 30 devices x 100000 shards exceed the 1437 training images",
        ),
        (
            ["workload.app.server=math:pi", "workload.app.client=math:pi"],
            "error: workload.app.server='math:pi': is a float, not a Flower ServerApp",
        ),
    ],
)
def test_values_that_ran_silently_wrong_are_refused(overrides, message, run_sim, tmp_path):
    res = run_sim(*overrides, "workload.rounds=1", "progress=false")
    assert res.returncode == 2
    [line] = res.stderr.strip().splitlines()
    assert line.startswith(message)
    assert list(tmp_path.iterdir()) == []


def test_a_sweep_checks_every_job_before_the_first_runs(run_sim, tmp_path):
    tiny = ["workload.rounds=1", "workload.model=mlp", "fleet.num_devices=4", "progress=false", "plots=false"]
    res = run_sim("-m", *tiny, "seed=0,1", "channel.ber=0,0.9", f"hydra.sweep.dir={tmp_path / 's'}")
    assert res.returncode == 2
    [line] = res.stderr.strip().splitlines()
    assert line.startswith("error: channel.ber=0.9: allowed range is [0, 0.5] (in the sweep's job ")
    assert not (tmp_path / "s").exists()  # job 1 (seed 0, ber 0) never ran

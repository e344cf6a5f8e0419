"""Whole jobs: `sim.federated.job.run` in-process on tiny configs, and `python -m sim` as a user runs it."""

from __future__ import annotations

import dataclasses
import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest

from sim.config import ConfigError
from sim.federated.grid import ClientRow
from sim.federated.report import RoundRow
from sim.jobs import run

from ..conftest import CONF_DIR, TINY_OVERRIDES, finish, make_tiny_cfg, start_sim

TRACES = CONF_DIR / "traces"

STATUSES = {
    "received",
    "straggler",
    "busy",
    "offline",
    "battery_depleted",
    "lost_down",
    "lost_up",
    "out_of_memory",
    "error",
}
ROUND_COLUMNS = [f.name for f in dataclasses.fields(RoundRow)]
CLIENT_COLUMNS = [f.name for f in dataclasses.fields(ClientRow)]
# sim/federated/job.py `_summary`: the settings, then the outcomes
SUMMARY_COLUMNS = [
    "strategy",
    "seed",
    "dataset",
    "partition",
    "model",
    "num_devices",
    "fraction_train",
    "deadline_s",
    "channel_model",
    "channel_mode",
    "channel_ber",
    "bandwidth_bps",
    "latency_s",
    "channel_medium",
    "channel_links",
    "rounds",
    "strategy_params",
    "lr",
    "local_epochs",
    "batch_size",
    "fleet_mix",
    "rounds_run",
    "ended",
    "final_accuracy",
    "best_accuracy",
    "final_loss",
    "collapsed_round",
    "target_accuracy",
    "rounds_to_target",
    "time_to_target_s",
    "energy_to_target_j",
    "bytes_to_target",
    "equal_time_s",
    "accuracy_at_equal_time",
    "sim_time_s",
    "active_energy_j",
    "idle_energy_j",
    "server_compute_s",
    "server_energy_j",
    "devices_alive",
    "bytes_down",
    "bytes_up",
    "retransmissions",
    "bits_flipped",
    "clients_straggled",
    "clients_busy",
    "clients_offline",
    "clients_battery_depleted",
    "clients_lost",
    "clients_out_of_memory",
    "clients_non_finite",
    "updates_applied",
    "mean_staleness",
    "max_staleness",
    "mean_activation_divergence",
]
COMPARE = ["fedavg", "fedmax"]


def _csvs(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.csv"))}


def _compare_cfg(seed: int = 0):
    cfg = make_tiny_cfg()
    cfg.seed = seed
    cfg.compare = list(COMPARE)
    return cfg


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    summary = pd.DataFrame(run(_compare_cfg(), out))
    return out, summary


# --- one job, two strategies -------------------------------------------------------------
def test_compare_writes_a_folder_per_strategy_and_a_comparison(compared) -> None:
    out, summary = compared
    for name in COMPARE:
        for f in ("rounds.csv", "clients.csv", "summary.csv"):
            assert (out / name / f).is_file(), f"{name}/{f}"
    assert not (out / "rounds.csv").exists()
    table = pd.read_csv(out / "comparison.csv")
    assert list(table.columns) == SUMMARY_COLUMNS
    assert list(table["strategy"]) == COMPARE
    assert len(table) == 2
    pd.testing.assert_frame_equal(table, summary.reset_index(drop=True), check_dtype=False)
    for i, name in enumerate(COMPARE):
        one = pd.read_csv(out / name / "summary.csv")
        pd.testing.assert_frame_equal(one, table.iloc[[i]].reset_index(drop=True))


def test_compare_rounds_and_clients(compared) -> None:
    out, _ = compared
    cfg = _compare_cfg()
    for name in COMPARE:
        rounds = pd.read_csv(out / name / "rounds.csv")
        assert list(rounds.columns) == ROUND_COLUMNS
        assert list(rounds["round"]) == list(range(1, cfg.workload.rounds + 1))
        assert rounds["accuracy"].between(0, 1).all()
        t = rounds["sim_time_s"].to_numpy()
        assert t[0] > 0 and (np.diff(t) > 0).all()
        assert (rounds["energy_j"] > 0).all()
        assert (rounds["bytes_down"] > 0).all() and (rounds["bytes_up"] > 0).all()
        probed = rounds[rounds["clients_received"] > 1]  # a generalised Jensen-Shannon divergence
        assert len(probed) and (probed["activation_divergence"] >= 0).all()
        assert (probed["activation_divergence"] <= np.log(probed["clients_received"])).all()
        clients = pd.read_csv(out / name / "clients.csv")
        assert list(clients.columns) == CLIENT_COLUMNS
        assert set(clients["status"]) <= STATUSES
        assert set(clients["round"]) == set(rounds["round"])
        per_round = clients[clients["phase"] == "train"].groupby("round").size()
        assert list(per_round) == list(rounds["clients_sampled"])
        summary = pd.read_csv(out / name / "summary.csv").iloc[0]
        assert summary["active_energy_j"] > 0 and summary["idle_energy_j"] >= 0
        assert summary["sim_time_s"] == pytest.approx(t[-1])
        assert summary["bytes_down"] == rounds["bytes_down"].sum()
        assert 0 <= summary["final_accuracy"] <= 1


def test_compare_strategies_share_fleet_and_sampling(compared) -> None:
    out, _ = compared
    a = pd.read_csv(out / COMPARE[0] / "clients.csv")
    b = pd.read_csv(out / COMPARE[1] / "clients.csv")
    cols = ["round", "phase", "node_id", "device", "device_memory_bytes"]
    pd.testing.assert_frame_equal(a[cols], b[cols])


# --- determinism ---------------------------------------------------------------------------
def test_same_config_gives_byte_identical_csvs(compared, tmp_path) -> None:
    out, _ = compared
    run(_compare_cfg(), tmp_path)
    first, second = _csvs(out), _csvs(tmp_path)
    assert set(first) == {"comparison.csv"} | {
        f"{s}/{f}" for s in COMPARE for f in ("rounds.csv", "clients.csv", "summary.csv", "timeline.csv")
    }
    assert first.keys() == second.keys()
    for name in first:
        assert first[name] == second[name], name


def test_another_seed_gives_another_run(compared, tmp_path) -> None:
    out, _ = compared
    run(_compare_cfg(seed=1), tmp_path)
    name = COMPARE[0]
    differs = [
        f for f in ("rounds.csv", "clients.csv") if (out / name / f).read_bytes() != (tmp_path / name / f).read_bytes()
    ]
    assert differs


# --- channels ------------------------------------------------------------------------------
# corrupted float32 weights may become inf/NaN; Flower's aggregation then warns (numpy)
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_raw_channel_flips_bits_without_retransmitting(tiny_cfg, tmp_path) -> None:
    cfg = tiny_cfg()
    cfg.channel.mode, cfg.channel.ber = "raw", 1e-3
    run(cfg, tmp_path)
    rounds = pd.read_csv(tmp_path / "rounds.csv")
    assert (rounds["bits_flipped"] > 0).all()
    assert (rounds["retransmissions"] == 0).all()
    clients = pd.read_csv(tmp_path / "clients.csv")
    assert (clients.loc[clients["status"] == "received", "bits_flipped"] > 0).all()
    assert pd.read_csv(tmp_path / "summary.csv")["bits_flipped"].iloc[0] == rounds["bits_flipped"].sum()


def test_arq_channel_retransmits_and_delivers_clean_payloads(tiny_cfg, tmp_path) -> None:
    cfg = tiny_cfg()
    cfg.channel.mode, cfg.channel.ber = "arq", 1e-4
    run(cfg, tmp_path)
    rounds = pd.read_csv(tmp_path / "rounds.csv")
    assert rounds["retransmissions"].sum() > 0
    assert (rounds["bits_flipped"] == 0).all()
    clients = pd.read_csv(tmp_path / "clients.csv")
    assert (clients["bits_flipped"] == 0).all()
    assert (clients["attempts_down"] >= 1).all()


# --- deadline and memory -------------------------------------------------------------------
def test_a_tiny_deadline_makes_every_client_a_straggler(tiny_cfg, tmp_path) -> None:
    cfg = tiny_cfg()
    cfg.strategy.timeout_s = 1e-3
    cfg.fleet.server = None  # rounds of exactly the deadline: a server that aggregates and evaluates at once
    run(cfg, tmp_path)
    rounds = pd.read_csv(tmp_path / "rounds.csv")
    assert len(rounds) == cfg.workload.rounds
    assert (rounds["clients_received"] == 0).all()
    assert (rounds["clients_straggled"] == rounds["clients_sampled"]).all()
    assert rounds["sim_time_s"].to_numpy() == pytest.approx(1e-3 * rounds["round"].to_numpy())
    assert rounds["accuracy"].nunique() == 1  # nothing arrived: the global model never changed
    clients = pd.read_csv(tmp_path / "clients.csv")
    assert set(clients["status"]) == {"straggler"}


def test_a_model_no_device_can_hold_is_refused(tiny_cfg, tmp_path) -> None:
    cfg = tiny_cfg()
    cfg.fleet.mix = {"cortex_m7_512kb": 1.0}
    cfg.workload.model = "cnn"
    with pytest.raises(ConfigError, match=r"workload\.model") as info:
        run(cfg, tmp_path)
    assert "\n" not in str(info.value)
    assert not list(tmp_path.rglob("*.csv"))


def test_devices_too_small_for_the_model_run_out_of_memory(tiny_cfg, tmp_path) -> None:
    cfg = tiny_cfg()
    cfg.fleet.mix = {"cortex_m7_512kb": 0.5, "rpi3_400mhz": 0.5}
    cfg.workload.model = "cnn"
    cfg.strategy.fraction_train = 1.0
    run(cfg, tmp_path)
    clients = pd.read_csv(tmp_path / "clients.csv")
    cortex = clients[clients["device"] == "cortex_m7_512kb"]
    others = clients[clients["device"] != "cortex_m7_512kb"]
    assert len(cortex) and len(others)
    assert set(cortex["status"]) == {"out_of_memory"}
    assert (cortex["peak_memory_bytes"] > cortex["device_memory_bytes"]).all()
    assert (cortex["bytes_up"] == 0).all()
    assert set(others["status"]) == {"received"}
    rounds = pd.read_csv(tmp_path / "rounds.csv")
    assert (
        rounds["clients_out_of_memory"] == rounds.merge(cortex.groupby("round").size().rename("n").reset_index())["n"]
    ).all()
    assert not math.isnan(rounds["accuracy"].iloc[-1])


# --- the command line ----------------------------------------------------------------------
BAD_INPUTS = {  # id: (overrides, the setting the error must name)
    "ber_above_half": (["channel.ber=2"], "channel.ber"),
    "ber_negative": (["channel.ber=-0.1"], "channel.ber"),
    "unknown_strategy": (["strategy=nosuchstrategy"], "strategy"),
    "selected_strategy_not_compared": (["compare=[fedavg,fedmax]", "strategy=fedbuff"], "strategy=fedbuff"),
    "fedbuff_empty_buffer": (
        ["compare=[fedavg,fedbuff]", "strategy=fedbuff", "strategy.params.buffer_size=0"],
        "strategy.params.buffer_size",
    ),
    "fedasync_mixing_above_one": (
        ["compare=[fedasync]", "strategy=fedasync", "strategy.params.mixing=1.5"],
        "strategy.params.mixing",
    ),
    "negative_time_budget": (["workload.time_budget_s=-5"], "workload.time_budget_s"),
    "zero_bandwidth": (["channel.bandwidth_bps=0"], "channel.bandwidth_bps"),
    "empty_fleet": (["fleet.num_devices=0"], "fleet.num_devices"),
    "missing_dataset_folder": (["dataset.name=mnist", "dataset.path=/nonexistent"], "dataset.path"),
    "negative_online_period": (["fleet.online_s=-60"], "fleet.online_s"),
    "zero_cell_capacity": (["channel.medium=shared", "channel.cell_up_bps=0"], "channel.cell_up_bps"),
    "trace_for_absent_devices": (
        [f"fleet.availability_trace={TRACES / 'availability_30.csv'}"],  # 30 devices; the tiny fleet has 6
        "fleet.availability_trace",
    ),
    "not_a_trace": ([f"fleet.capacity_trace={TRACES / 'README.md'}"], "fleet.capacity_trace"),
}


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    """Every `python -m sim` of this module, run a few at a time in the background (each
    pays ~3 s of imports); `cli(name)` waits for one and returns (CompletedProcess, its folder)."""
    base = tmp_path_factory.mktemp("cli")
    jobs = {
        "run": [*TINY_OVERRIDES, f"hydra.run.dir={base / 'run' / 'out'}"],
        "sweep": [
            "-m",
            *TINY_OVERRIDES,
            "channel.ber=0,1e-4",
            "compare=[fedavg,fedmax]",
            f"hydra.sweep.dir={base / 'sweep' / 'out'}",
        ],
        "sweep_params": [  # a parameter no summary column names: the sweep's comparison names it
            "-m",
            *TINY_OVERRIDES,
            "compare=[fedavg,fedbuff]",
            "strategy=fedbuff",
            "strategy.params.buffer_size=1,2",
            f"hydra.sweep.dir={base / 'sweep_params' / 'out'}",
        ],
    }
    for name, (overrides, _) in BAD_INPUTS.items():  # the bad setting last, so that it wins
        jobs[name] = [*TINY_OVERRIDES, f"hydra.run.dir={base / name / 'out'}", *overrides]
    for name in jobs:
        (base / name).mkdir()
    with ThreadPoolExecutor(max_workers=max(2, min(4, os.cpu_count() or 2))) as pool:
        futures = {
            name: pool.submit(lambda a, d: finish(start_sim(a, d)), args, base / name) for name, args in jobs.items()
        }
        yield lambda name: (futures[name].result(), base / name)


def test_cli_run_writes_the_reports(cli) -> None:
    proc, folder = cli("run")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    out = folder / "out"
    for f in ("rounds.csv", "clients.csv", "summary.csv"):
        assert (out / f).is_file(), f
    rounds = pd.read_csv(out / "rounds.csv")
    assert list(rounds.columns) == ROUND_COLUMNS and len(rounds) == 2
    summary = pd.read_csv(out / "summary.csv")
    assert summary["model"].iloc[0] == "mlp" and summary["num_devices"].iloc[0] == 6
    timeline = pd.read_csv(out / "timeline.csv")
    assert list(timeline.columns) == ["device", "state", "start_s", "end_s"]
    assert (timeline.end_s > timeline.start_s).all() and {"receive", "compute", "transmit"} <= set(timeline.state)
    clients = pd.read_csv(out / "clients.csv")
    worked = set(clients.loc[clients.status == "received", "node_id"].astype(str))
    assert worked <= set(timeline.device.astype(str)) and "server" in set(timeline.device)


def test_cli_sweep_writes_one_comparison(cli) -> None:
    proc, folder = cli("sweep")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    out = folder / "out"
    comparisons = sorted(p.relative_to(out) for p in out.rglob("comparison.csv"))
    assert [str(p) for p in comparisons] == ["comparison.csv"]
    table = pd.read_csv(out / "comparison.csv")
    assert len(table) == 4
    assert "channel_ber" in table.columns and "job" in table.columns
    assert sorted(table["channel_ber"]) == [0, 0, 1e-4, 1e-4]
    assert sorted(zip(table["channel_ber"], table["strategy"])) == sorted(
        (ber, s) for ber in (0, 1e-4) for s in COMPARE
    )
    for ber in ("0", "0.0001"):  # a job's folder is named by its swept override
        for s in COMPARE:
            assert (out / f"channel.ber={ber}" / s / "rounds.csv").is_file()
    assert "channel.ber" not in table.columns  # named once, by the summary's channel_ber


def test_cli_sweep_names_a_swept_parameter(cli) -> None:
    proc, folder = cli("sweep_params")
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(folder / "out" / "comparison.csv")
    assert list(table.columns[:2]) == ["job", "strategy.params.buffer_size"]
    assert sorted(zip(table["strategy.params.buffer_size"], table["strategy"])) == [
        (1, "fedavg"),
        (1, "fedbuff"),
        (2, "fedavg"),
        (2, "fedbuff"),
    ]


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_cli_bad_input_is_one_line_error(cli, case: str) -> None:
    proc, folder = cli(case)
    _, setting = BAD_INPUTS[case]
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert setting in lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not list(folder.rglob("*.csv"))


def test_plots_false_writes_the_same_csvs_and_no_png(tiny_cfg, tmp_path) -> None:
    cfg = tiny_cfg()
    run(cfg, tmp_path / "with")
    cfg.plots = False
    run(cfg, tmp_path / "without")
    assert sorted(p.name for p in (tmp_path / "with").glob("*.png")) == [
        "accuracy_vs_bytes.png",
        "accuracy_vs_energy.png",
        "accuracy_vs_round.png",
        "accuracy_vs_time.png",
        "timeline.png",
    ]
    assert not list((tmp_path / "without").glob("*.png"))
    assert _csvs(tmp_path / "with") == _csvs(tmp_path / "without")


def test_a_fleet_whose_batteries_run_out_stops_the_run_and_keeps_its_rounds(tiny_cfg, tmp_path) -> None:
    cfg = tiny_cfg()
    cfg.workload.rounds = 50
    cfg.fleet.mix = {"rpi3_400mhz": 1.0}
    cfg.fleet.battery_j = {"rpi3_400mhz": 10.0}  # a few rounds of radio and compute, idle included
    summary = run(cfg, tmp_path)[0]
    rounds = pd.read_csv(tmp_path / "rounds.csv")
    clients = pd.read_csv(tmp_path / "clients.csv")
    assert summary["ended"].startswith("fleet exhausted") and 0 < summary["rounds_run"] == len(rounds) < 50
    assert summary["devices_alive"] < 2 and set(clients.status) <= {"received", "battery_depleted", "straggler"}

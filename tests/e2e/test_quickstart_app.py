"""A user's unmodified Flower app (quickstart-pytorch, Message API) run by the simulator."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from flwr.app import ArrayRecord

from sim.jobs import run

from ..quickstart_app.task import Net

SERVER = "tests.quickstart_app.server_app:app"
CLIENT = "tests.quickstart_app.client_app:app"
NUM_DEVICES = 6


def _run_config(**changes) -> dict:
    rc = {
        "num-server-rounds": 3,
        "fraction-train": 0.5,
        "fraction-evaluate": 0.5,
        "local-epochs": 1,
        "lr": 0.1,
        "batch-size": 32,
    }
    return {**rc, **changes}


def _quickstart_cfg(tiny_cfg, run_config: dict):
    cfg = tiny_cfg()
    cfg.fleet.num_devices = NUM_DEVICES
    cfg.channel.ber = 0.0
    cfg.strategy.timeout_s = None  # the ServerApp passes its own timeout (Flower's default)
    cfg.workload.app.server = SERVER
    cfg.workload.app.client = CLIENT
    cfg.workload.app.run_config = run_config
    cfg.workload.app.accuracy_metric = "eval_acc"
    cfg.workload.app.loss_metric = "eval_loss"
    return cfg


def _bytes_on_air(payload: int, packet_bytes: int, header_bytes: int) -> int:
    """One error-free transfer: the payload plus a header per packet."""
    return payload + -(-payload // packet_bytes) * header_bytes


@pytest.fixture(scope="module")
def quickstart_out(tmp_path_factory):
    from ..conftest import make_tiny_cfg

    cfg = _quickstart_cfg(make_tiny_cfg, _run_config())
    out = tmp_path_factory.mktemp("quickstart")
    summary = pd.DataFrame(run(cfg, out))
    return cfg, out, summary


def test_writes_one_row_per_server_round(quickstart_out) -> None:
    cfg, out, summary = quickstart_out
    rounds = pd.read_csv(out / "rounds.csv")
    assert list(rounds["round"]) == list(range(1, cfg.workload.app.run_config["num-server-rounds"] + 1))
    t = rounds["sim_time_s"].to_numpy()
    assert t[0] > 0 and (t[1:] > t[:-1]).all()
    assert (rounds["clients_sampled"] == 3).all()  # fraction-train 0.5 of 6 nodes
    assert (rounds["clients_received"] == 3).all()
    assert len(summary) == 1 and (out / "summary.csv").exists() and (out / "clients.csv").exists()


def test_accuracy_comes_from_the_apps_evaluate_metrics(quickstart_out) -> None:
    _, out, summary = quickstart_out
    rounds = pd.read_csv(out / "rounds.csv")
    assert rounds["accuracy"].notna().all() and rounds["loss"].notna().all()
    assert rounds["accuracy"].between(0, 1).all()
    assert (rounds["loss"] > 0).all()
    clients = pd.read_csv(out / "clients.csv")
    assert set(clients["phase"]) == {"train", "evaluate"}
    assert summary["final_accuracy"].iloc[0] == pytest.approx(rounds["accuracy"].iloc[-1])


def test_bytes_are_what_the_model_size_implies(quickstart_out) -> None:
    cfg, out, _ = quickstart_out
    c = cfg.channel
    model_bytes = ArrayRecord(Net().state_dict()).count_bytes()
    per_transfer = _bytes_on_air(model_bytes, c.packet_bytes, c.header_bytes)
    # a sanity bound on the payload itself: float32 parameters plus small framing
    n_params = sum(p.numel() for p in Net().parameters())
    assert 4 * n_params <= model_bytes < 4 * n_params + 1024

    clients = pd.read_csv(out / "clients.csv")
    assert set(clients["status"]) == {"received"}
    train, evaluate = clients[clients["phase"] == "train"], clients[clients["phase"] == "evaluate"]
    assert (train["bytes_down"] == per_transfer).all() and (train["bytes_up"] == per_transfer).all()
    assert (evaluate["bytes_down"] == per_transfer).all()
    assert (evaluate["bytes_up"] == 0).all()  # the evaluate reply carries metrics only, no arrays
    assert (clients["compute_flops"] > 0).all()
    assert (clients["peak_memory_bytes"] > 0).all()
    assert (clients["retransmissions"] == 0).all() and (clients["bits_flipped"] == 0).all()

    rounds = pd.read_csv(out / "rounds.csv")
    assert (rounds["bytes_down"] > 0).all() and (rounds["bytes_up"] > 0).all()
    assert list(rounds["bytes_down"]) == list(clients.groupby("round")["bytes_down"].sum())
    assert list(rounds["bytes_up"]) == list(clients.groupby("round")["bytes_up"].sum())
    assert (rounds["energy_j"] > 0).all()


def test_no_federated_evaluation_gives_nan_accuracy(tiny_cfg, tmp_path) -> None:
    cfg = _quickstart_cfg(tiny_cfg, _run_config(**{"num-server-rounds": 2, "fraction-evaluate": 0.0}))
    run(cfg, tmp_path)
    rounds = pd.read_csv(tmp_path / "rounds.csv")
    assert len(rounds) == 2
    assert rounds["accuracy"].isna().all()
    clients = pd.read_csv(tmp_path / "clients.csv")
    assert set(clients["phase"]) == {"train"}
    assert not math.isnan(rounds["sim_time_s"].iloc[-1])


def test_same_config_same_csvs(quickstart_out, tmp_path) -> None:
    """Run in the same process after other runs: the user's ServerApp builds `Net()` from
    torch's global generator, which the simulator must seed for the run to be reproducible."""
    cfg, out, _ = quickstart_out
    run(cfg, tmp_path)
    for name in ("rounds.csv", "clients.csv", "summary.csv"):
        assert (tmp_path / name).read_bytes() == (out / name).read_bytes(), name


def _app_folder(root: Path) -> Path:
    """The quickstart app as a Flower app folder: a package of its own and a pyproject.toml."""
    src = Path(__file__).resolve().parents[1] / "quickstart_app"
    package = root / "app" / "myapp"
    package.mkdir(parents=True)
    for name in ("__init__", "client_app", "server_app", "task"):
        text = (src / f"{name}.py").read_text().replace("tests.quickstart_app", "myapp")
        (package / f"{name}.py").write_text(text)
    (root / "app" / "pyproject.toml").write_text(
        '[project]\nname = "myapp"\nversion = "1.0.0"\n\n'
        '[tool.flwr.app]\npublisher = "me"\n\n'
        '[tool.flwr.app.components]\nserverapp = "myapp.server_app:app"\nclientapp = "myapp.client_app:app"\n\n'
        "[tool.flwr.app.config]\nnum-server-rounds = 3\nfraction-train = 0.5\nfraction-evaluate = 0.5\n"
        "local-epochs = 1\nlr = 0.1\nbatch-size = 32\n"
    )
    return root / "app"


def test_an_app_folder_runs_as_flwr_run_takes_it(run_sim, tmp_path):
    app = _app_folder(tmp_path)
    out = tmp_path / "r"
    res = run_sim(
        f"workload.app.path={app}",
        "workload.app.run_config.num-server-rounds=2",  # the command line overrides the pyproject's config
        "fleet.num_devices=4",
        "fleet.availability=0.9",
        "workload.app.accuracy_metric=acc",
        "progress=true",
        f"hydra.run.dir={out}",
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.splitlines()[0].startswith(f"edgesim: federated, app {app} myapp.server_app:app / ")
    rounds = pd.read_csv(out / "rounds.csv")
    assert list(rounds["round"]) == [1, 2]
    summary = pd.read_csv(out / "summary.csv").iloc[0]
    assert summary["strategy"] == "app:myapp.server_app:app" and summary["dataset"] == "app"
    warnings = [ln for ln in res.stderr.splitlines() if ln.startswith("warning: ")]
    assert len(warnings) == 2 and "timeout=3600" in warnings[0] and "accuracy_metric='acc'" in warnings[1]
    assert "app: 2/2 rounds" in res.stderr


def test_an_app_folder_without_components_is_one_line(run_sim, tmp_path):
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "pyproject.toml").write_text('[tool.flwr.app.components]\nserverapp = "a:b"\n')
    res = run_sim(f"workload.app.path={tmp_path / 'app'}")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        f"error: workload.app.path='{tmp_path / 'app'}': pyproject.toml has no [tool.flwr.app.components] "
        "clientapp = 'module:attr'"
    ]

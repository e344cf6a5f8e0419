"""tracking=mlflow and tracking=tensorboard: the settings, per-round metrics and report files
of a run, read back from a local MLflow store and from TensorBoard's event files."""

from __future__ import annotations

import struct

import pandas as pd
import pytest

TINY = ["workload.rounds=2", "workload.model=mlp", "fleet.num_devices=4", "progress=false"]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # SQLAlchemy's, about MLflow's queries
def test_mlflow_store_holds_the_run(run_sim, tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "r"
    res = run_sim(*TINY, "tracking=mlflow", f"tracking_uri={uri}", f"hydra.run.dir={out}", timeout=300)
    assert res.returncode == 0, res.stderr[-1500:]
    client = MlflowClient(uri)
    [run] = client.search_runs([client.get_experiment_by_name("edgesim").experiment_id])
    assert run.info.run_name == "edgesim: federated, fedavg, 4 devices, digits (iid), 1 Mbit/s arq BER 0, seed 0"
    assert run.data.params["workload.rounds"] == "2" and run.data.params["fleet.num_devices"] == "4"
    rounds = pd.read_csv(out / "rounds.csv")
    history = client.get_metric_history(run.info.run_id, "round/accuracy")
    assert [(m.step, m.value) for m in history] == list(zip(rounds["round"], rounds["accuracy"]))
    summary = pd.read_csv(out / "summary.csv").iloc[0]
    assert run.data.metrics["final_accuracy"] == summary["final_accuracy"]
    files = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"summary.csv", "rounds.csv", "report.html"} <= files


def _events(folder):
    """Every event in the TFRecord files of `folder` (length, CRC, payload, CRC per record)."""
    from tensorboardX.proto import event_pb2

    events = []
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        i = 0
        while i < len(data):
            (n,) = struct.unpack("<Q", data[i : i + 8])
            e = event_pb2.Event()
            e.ParseFromString(data[i + 12 : i + 12 + n])
            events.append(e)
            i += 12 + n + 4
    return events


def test_tensorboard_event_files_hold_the_run(run_sim, tmp_path):
    out = tmp_path / "r"
    res = run_sim(*TINY, "compare=[fedavg,fedprox]", "tracking=tensorboard", f"hydra.run.dir={out}", timeout=300)
    assert res.returncode == 0, res.stderr[-1500:]
    scalars, images, texts = {}, set(), set()
    for e in _events(out / "tensorboard"):
        for v in e.summary.value:
            if v.HasField("image"):
                images.add(v.tag)
            elif v.metadata.plugin_data.plugin_name == "text":
                texts.add(v.tag)
            else:
                scalars.setdefault(v.tag, []).append((e.step, v.simple_value))
    rounds = pd.read_csv(out / "fedprox" / "rounds.csv")
    expected = list(zip(rounds["round"], rounds["accuracy"].astype("float32")))
    assert [(s, v) for s, v in scalars["fedprox/accuracy"]] == [(int(s), float(v)) for s, v in expected]
    assert "fedavg/summary/final_accuracy" in scalars and "accuracy_vs_round.png" in images
    assert {"run/text_summary", "settings/text_summary"} <= texts

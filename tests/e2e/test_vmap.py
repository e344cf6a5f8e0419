"""`workload.vectorize`: a round's clients trained together with torch.func.vmap give what the
per-client loop gives (to float rounding), and charge each client the very same work."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity
from torch import nn

from experiments.common.models import MODEL_NAMES, build_model
from experiments.federated import vectorized
from experiments.federated.records import array_view
from experiments.federated.task import make_client_app
from sim.backends import LocalBackend, make_backend
from sim.backends.vectorized import VectorizedBackend
from sim.backends.vectorized import execute as execute_together
from sim.config import ConfigError
from sim.federated.build import prepare
from sim.jobs import run, validate
from strategies.objectives import FEDMAX_BETA_KEY, PROXIMAL_MU_KEY

from ..conftest import make_tiny_cfg

RTOL = 1e-5  # of the largest magnitude of each array


def _task(model: str):
    cfg = make_tiny_cfg()
    cfg.fleet.num_devices = 24  # of which `_jobs` trains the first 6
    cfg.workload.model, cfg.workload.local_epochs = model, 2
    cfg.dataset.partition = "dirichlet"  # clients of unequal sizes: unequal steps, short last batches
    return prepare(cfg)[3]


def _jobs(task, config: dict, evaluate_node: int | None = None) -> list:
    """Train jobs for every device, each from its own start (as after a raw channel's flips)."""
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    base = task.build_model().state_dict()
    jobs = []
    for node in range(1, 7):
        gen = torch.Generator().manual_seed(node)
        start = {k: v + 1e-3 * torch.randn(v.shape, generator=gen) for k, v in base.items()}
        kind = "evaluate" if node == evaluate_node else "train"
        msg = Message(
            RecordDict({"arrays": ArrayRecord(start), "config": ConfigRecord({"server-round": 3, **config})}),
            node,
            kind,
            group_id="3",
        )
        msg.metadata.__dict__["_message_id"] = f"m{node}"
        ctx = Context(run_id=1, node_id=node, node_config={"partition-id": node - 1}, state=RecordDict(), run_config={})
        jobs.append((msg, ctx, 1000 + node))
    return jobs


def _assert_same(loop, vec) -> None:
    assert len(loop) == len(vec)
    for a, b in zip(loop, vec):
        assert (a.flops, a.peak_bytes, a.error) == (b.flops, b.peak_bytes, b.error)  # the same work charged
        if a.reply is None:
            assert b.reply is None
            continue
        ca, cb = a.reply.content, b.reply.content
        assert list(ca) == list(cb)
        assert b.reply.metadata.reply_to_message_id == a.reply.metadata.reply_to_message_id
        for key, rec in ca.items():
            if isinstance(rec, ArrayRecord):  # the weights
                assert list(rec) == list(cb[key]) and rec.count_bytes() == cb[key].count_bytes()
                for name in rec:
                    x, y = array_view(rec[name]), array_view(cb[key][name])
                    assert x.shape == y.shape and x.dtype == y.dtype
                    assert np.abs(x - y).max() <= RTOL * np.abs(x).max(), (key, name)
            else:  # the metrics
                assert dict(cb[key]) == pytest.approx(dict(rec), rel=RTOL)  # train_loss, num-examples


@pytest.mark.parametrize(
    "model,config",
    [
        ("cnn", {}),
        ("cnn", {PROXIMAL_MU_KEY: 1.0}),
        ("cnn", {FEDMAX_BETA_KEY: 1000.0}),
        ("mlp", {PROXIMAL_MU_KEY: 0.5, FEDMAX_BETA_KEY: 10.0}),
    ],
)
def test_clients_trained_together_match_the_per_client_loop(model, config) -> None:
    task = _task(model)
    sizes = [len(p) for p in task.partitions[:6]]
    assert len(set(-(-n // task.batch_size) for n in sizes)) > 1 and any(n % task.batch_size for n in sizes)
    app = make_client_app(task)
    jobs = _jobs(task, config, evaluate_node=3)  # an evaluate job among them: run by the ClientApp itself
    loop = LocalBackend(torch_threads=1).execute(app, jobs)
    _assert_same(loop, VectorizedBackend(task, torch_threads=1).execute(app, jobs))
    if model == "cnn" and not config:  # the other way to handle unequal steps gives the same
        _assert_same(loop, execute_together(task, app, jobs, {}, 1, mode="mask"))


def test_what_the_vectorised_path_cannot_train_runs_through_the_client_app() -> None:
    task = _task("mlp")
    task = replace(task, partitions=[*task.partitions[:5], np.zeros(0, dtype=np.int64)])  # an empty partition
    app = make_client_app(task)
    jobs = _jobs(task, {})
    loop = LocalBackend(torch_threads=1).execute(app, jobs)
    assert loop[-1].reply is None and loop[-1].error  # the ClientApp fails on no data; so it does here
    _assert_same(loop, VectorizedBackend(task, torch_threads=1).execute(app, jobs))


def _strip(frame: pd.DataFrame, learned: tuple[str, ...]) -> pd.DataFrame:
    return frame.drop(columns=[c for c in learned if c in frame.columns])


def test_vectorize_keeps_every_simulated_figure_and_the_learning_within_rounding(tmp_path) -> None:
    def job(vectorize: bool):
        cfg = make_tiny_cfg()
        cfg.seed, cfg.compare = 3, ["fedavg", "fedprox", "fedmax"]
        cfg.workload.local_epochs, cfg.workload.vectorize = 2, vectorize
        cfg.channel.mode, cfg.channel.ber = "raw", 1e-6  # flipped bits: every client starts from its own weights
        cfg.fleet.num_devices, cfg.strategy.fraction_train = 8, 0.5
        return cfg

    run(job(False), tmp_path / "loop")
    run(job(True), tmp_path / "vmap")
    run(job(True), tmp_path / "vmap-again")
    csvs = sorted(p.relative_to(tmp_path / "vmap") for p in (tmp_path / "vmap").rglob("*.csv"))
    assert len(csvs) == 13 and all(
        (tmp_path / "vmap" / c).read_bytes() == (tmp_path / "vmap-again" / c).read_bytes() for c in csvs
    )  # deterministic, as every run
    learned = (
        "accuracy",
        "loss",
        "activation_divergence",
        "final_accuracy",
        "best_accuracy",
        "final_loss",
        "mean_activation_divergence",
    )
    for strategy in ("fedavg", "fedprox", "fedmax"):
        a, b = tmp_path / "loop" / strategy, tmp_path / "vmap" / strategy
        # times, FLOPs, bytes, energy, memory, statuses: from the work charged, identical to the byte
        assert (a / "clients.csv").read_bytes() == (b / "clients.csv").read_bytes()
        for name in ("rounds.csv", "summary.csv"):
            fa, fb = pd.read_csv(a / name), pd.read_csv(b / name)
            pd.testing.assert_frame_equal(_strip(fa, learned), _strip(fb, learned))
            for col in learned:
                if col in fa.columns:
                    np.testing.assert_allclose(fb[col], fa[col], rtol=1e-4, err_msg=f"{strategy} {name} {col}")


def test_unsupported_settings_are_one_line_errors() -> None:
    cfg = make_tiny_cfg()
    cfg.workload.vectorize = True
    validate(cfg)
    for change, words in (
        (lambda c: setattr(c, "backend", "ray"), "backend=local"),
        (
            lambda c: setattr(c.workload.app, "client", "a:b") or setattr(c.workload.app, "server", "a:b"),
            "workload.app.client",
        ),
    ):
        bad = make_tiny_cfg()
        bad.workload.vectorize = True
        change(bad)
        with pytest.raises(ConfigError, match="workload.vectorize") as err:
            validate(bad)
        assert words in str(err.value) and "\n" not in str(err.value)
    task = prepare(cfg)[3]
    assert isinstance(make_backend(cfg, task=task), VectorizedBackend)
    assert not isinstance(make_backend(make_tiny_cfg()), VectorizedBackend)


def test_models_vmap_cannot_train_per_client_are_named() -> None:
    for name in MODEL_NAMES:
        assert vectorized.unsupported(build_model(name, (3, 32, 32), 10)) is None
    assert "batch normalisation" in vectorized.unsupported(nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4)))
    assert "dropout" in vectorized.unsupported(nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.1)))
    module = nn.Linear(4, 4)
    module.register_buffer("steps", torch.zeros(1))
    assert "buffers (steps)" in vectorized.unsupported(module)


def test_the_client_app_builds_one_model_and_replies_as_a_fresh_one_would() -> None:
    task = _task("cnn")
    builds = []

    def counted():
        builds.append(1)
        return build_model("cnn", task.data.input_shape, task.data.num_classes, seed=0)

    shared = make_client_app(replace(task, build_model=counted))
    jobs = _jobs(task, {PROXIMAL_MU_KEY: 1.0}, evaluate_node=4)
    one = LocalBackend(torch_threads=1).execute(shared, jobs)
    assert len(builds) == 1  # built at the first message, reused by every train and evaluate message after
    fresh = [LocalBackend(torch_threads=1).execute(make_client_app(task), [job])[0] for job in jobs]
    for a, b in zip(one, fresh):  # the same bytes: loading replaces every weight, a new optimiser each time
        assert (a.flops, a.peak_bytes, a.error) == (b.flops, b.peak_bytes, b.error)
        ca, cb = a.reply.content, b.reply.content
        assert list(ca) == list(cb)
        for key, rec in ca.items():
            if isinstance(rec, ArrayRecord):
                assert [arr.data for arr in rec.values()] == [arr.data for arr in cb[key].values()], key
            else:
                assert dict(rec) == dict(cb[key]), key

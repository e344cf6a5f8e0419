"""Asynchronous servers on the simulated grid: push/pull on the clock, time-to-live, staleness,
server versions, and FedAsync/FedBuff against their definitions."""

import math

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp.strategy import FedAvg

from channels import IndependentBits, Link
from devices import build_fleet
from sim.federated.grid import SimGrid
from sim.federated.job import _flower_session
from sim.net.build import plain_network
from strategies import build_strategy
from strategies.asynchronous import FedAsync, FedBuff, staleness_weight

FLOPS = 2 * 100 * 100 * 100  # what the test app computes per message (a 100x100 linear layer on 100 rows)


def _shift_app() -> ClientApp:
    """Replies with the weights moved by node/10 (a fixed, node-dependent update), over 10
    examples; its work is one call of a linear layer, which the meter counts."""
    import torch

    app = ClientApp()
    layer = torch.nn.Linear(100, 100, bias=False)

    @app.train()
    def train(msg: Message, ctx: Context) -> Message:
        with torch.no_grad():
            layer(torch.ones(100, 100))
        node = ctx.node_config["partition-id"] + 1
        arrays = ArrayRecord({k: type(v)(v.numpy() + node / 10) for k, v in msg.content["arrays"].items()})
        metrics = MetricRecord({"num-examples": 10})
        return Message(content=RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=msg)

    return app


def _grid(mix=None, bandwidth=1e5, latency=0.01, spread=0.0) -> SimGrid:
    mix = mix or {"rpi3_400mhz": 4}
    fleet = build_fleet(mix, sum(mix.values()), spread=spread, rng=np.random.default_rng(0))
    link = Link(bandwidth_bps=bandwidth, latency_s=latency, errors=IndependentBits(0.0))
    net, server = plain_network(fleet, link)
    return SimGrid(fleet=fleet, net=net, server=server, client_app=_shift_app(), seed=1)


def _init() -> ArrayRecord:
    return ArrayRecord.from_numpy_ndarrays([np.zeros(500, np.float32)])


def _message(grid: SimGrid, node: int, server_round: int = 1, ttl: float | None = None) -> Message:
    content = RecordDict({"arrays": _init(), "config": ConfigRecord({"server-round": server_round})})
    return grid.create_message(content, MessageType.TRAIN, node, str(server_round), ttl=ttl)


def test_an_update_arrives_after_download_compute_and_upload_on_an_idle_link():
    grid = _grid()
    grid.net.env.run(until=5.0)  # dispatched at t0 = 5 s
    with _flower_session(seed=1, log_level="ERROR"):
        (mid,) = grid.push_messages([_message(grid, 1)])
        assert grid.now_s == 5.0  # pushing does not wait
        (reply,) = grid.pull_messages([mid])
    row = grid.phases[0].clients[0]
    d1 = row.bytes_down * 8 / 1e5 + 0.01
    c = grid.fleet.compute_time_s(row.compute_flops, 0)
    d2 = row.bytes_up * 8 / 1e5 + 0.01
    assert row.compute_flops == FLOPS and c > 0
    assert row.dispatch_s == 5.0
    assert row.arrival_s == pytest.approx(5.0 + d1 + c + d2, abs=1e-12)
    assert grid.now_s == row.arrival_s  # pulling ran the clock to the arrival, no further
    assert row.age_s == pytest.approx(d1 + c + d2) and row.staleness == 0.0
    assert reply.metadata.reply_to_message_id == mid and not reply.has_error()


def test_pull_returns_only_what_has_arrived_and_waits_for_the_next():
    grid = _grid(mix={"odroid_xu4": 1, "rpi3_400mhz": 1})  # a fast and a very slow device
    with _flower_session(seed=1, log_level="ERROR"):
        ids = list(grid.push_messages([_message(grid, 1), _message(grid, 2)]))
        first = grid.pull_messages(ids)
        t_first = grid.now_s
        assert [m.metadata.reply_to_message_id for m in first] == [ids[0]]
        assert grid.pull_messages([ids[0]]) == []  # a reply is pulled once
        second = grid.pull_messages(ids)
    assert [m.metadata.reply_to_message_id for m in second] == [ids[1]]
    assert grid.now_s > t_first


def test_a_message_without_reply_in_its_ttl_gets_flowers_error_reply():
    grid = _grid(bandwidth=1e3)  # the download alone takes seconds
    with _flower_session(seed=1, log_level="ERROR"):
        (mid,) = grid.push_messages([_message(grid, 1, ttl=0.5)])
        (reply,) = grid.pull_messages([mid])
    assert reply.has_error() and "ttl" in reply.error.reason
    assert grid.now_s == 0.5
    row = grid.phases[0].clients[0]
    assert math.isnan(row.staleness)
    grid.finish()
    assert row.status == "straggler"  # its reply came after the ttl


def _run(strategy, grid: SimGrid, rounds: int, timeout=None):
    evals = []

    def evaluate_fn(version, arrays):
        grid.mark_version(version)
        evals.append((version, grid.now_s))
        return None

    with _flower_session(seed=1, log_level="ERROR"):
        result = strategy.start(
            grid=grid, initial_arrays=_init(), num_rounds=rounds, timeout=timeout, evaluate_fn=evaluate_fn
        )
    grid.finish()
    return result, evals


def test_staleness_is_the_versions_made_between_dispatch_and_arrival():
    mix = {"rpi3_400mhz": 2, "odroid_xu4": 2, "cortex_m7_512kb": 1}
    grid = _grid(mix=mix, spread=0.3)  # every device its own speed
    _run(FedAsync(concurrency=4, mixing=0.5), grid, rounds=12)
    times = [v.time_s for v in grid.versions]
    rows = [c for p in grid.phases for c in p.clients if not math.isnan(c.staleness)]
    assert len(rows) >= 12 and len({r.arrival_s for r in rows}) == len(rows)  # no ties here
    assert any(r.staleness > 0 for r in rows)
    for r in rows:
        made_before = sum(t <= r.dispatch_s for t in times)
        made_by_arrival = sum(t < r.arrival_s for t in times)
        assert r.staleness == made_by_arrival - made_before
    assert [v.version for v in grid.versions] == list(range(1, 13))
    assert all(len(v.applied) == 1 for v in grid.versions)  # FedAsync: one update per version


def test_degenerate_fedbuff_is_fedavg():
    sync_grid, async_grid = _grid(), _grid()
    with _flower_session(seed=1, log_level="ERROR"):
        sync = FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_available_nodes=2).start(
            grid=sync_grid, initial_arrays=_init(), num_rounds=3
        )
    buff = FedBuff(concurrency=4, buffer_size=4, staleness="constant", server_lr=1.0)
    result, evals = _run(buff, async_grid, rounds=3)
    np.testing.assert_allclose(result.arrays["0"].numpy(), sync.arrays["0"].numpy(), rtol=1e-6)
    np.testing.assert_allclose(result.arrays["0"].numpy(), 3 * (1 + 2 + 3 + 4) / 40, rtol=1e-6)
    assert [v.version for v in async_grid.versions] == [1, 2, 3]
    assert all(len(v.applied) == 4 and {c.staleness for c in v.applied} == {0.0} for v in async_grid.versions)
    # the same clock: each version when each synchronous round ended
    sync_ends = [p.end_s for p in sync_grid.phases]
    assert [v.time_s for v in async_grid.versions] == pytest.approx(sync_ends)


def test_fedasync_mixes_with_its_staleness_weight():
    grid = _grid(mix={"rpi3_400mhz": 1})
    result, _ = _run(FedAsync(concurrency=1, mixing=0.5, staleness="constant"), grid, rounds=2)
    # one node (update: + 0.1), one message at a time: x1 = 0.05, x2 = 0.5 x1 + 0.5 (x1 + 0.1)
    np.testing.assert_allclose(result.arrays["0"].numpy(), 0.1, rtol=1e-6)


@pytest.mark.parametrize(
    ("kind", "tau", "expected"),
    [("constant", 7, 1.0), ("polynomial", 3, 0.5), ("hinge", 4, 1.0), ("hinge", 6, 1 / (0.5 * 2 + 1))],
)
def test_staleness_functions(kind, tau, expected):
    assert staleness_weight(kind, tau, a=0.5, b=4) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("name", "params", "setting"),
    [
        ("fedbuff", {"buffer_size": 0}, "strategy.params.buffer_size=0"),
        ("fedbuff", {"concurrency": 2, "buffer_size": 3}, "strategy.params.buffer_size=3"),
        ("fedbuff", {"server_lr": -1.0}, "strategy.params.server_lr=-1.0"),
        ("fedasync", {"mixing": 1.5}, "strategy.params.mixing=1.5"),
        ("fedasync", {"concurrency": 0}, "strategy.params.concurrency=0"),
        ("fedasync", {"staleness": "linear"}, "strategy.params.staleness='linear'"),
        ("fedasync", {"buffer_size": 2}, "strategy.params.buffer_size"),
    ],
)
def test_bad_parameters_name_the_setting(name, params, setting):
    with pytest.raises(ValueError, match=setting.replace("[", r"\[").replace("(", r"\(")):
        build_strategy(name, params)


def test_federated_evaluation_is_refused_not_ignored():
    with pytest.raises(ValueError, match=r"strategy.fraction_evaluate=0.5: FedBuff evaluates the model on the server"):
        build_strategy("fedbuff", {}, fraction_evaluate=0.5)

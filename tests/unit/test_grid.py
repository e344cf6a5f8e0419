"""The Flower bridge's own mechanics: raw-channel corruption of real arrays, deadlines,
memory failures, and the simulated clock across rounds."""

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp.strategy import FedAvg

from channels import IndependentBits, Link, TransferOutcome
from devices import build_fleet
from experiments.federated.records import NpyArray
from sim.federated.grid import FleetExhausted, SimGrid
from sim.federated.job import _flower_session
from sim.federated.payload import deliver as _deliver
from sim.federated.payload import message_bytes
from sim.net.build import plain_network


def _content() -> RecordDict:
    arrays = ArrayRecord(
        {
            "w": ArrayRecord.from_numpy_ndarrays([np.zeros(3, np.float32)])["0"],
            "b": ArrayRecord.from_numpy_ndarrays([np.ones(2, np.float32)])["0"],
        }
    )
    return RecordDict({"arrays": arrays, "config": ConfigRecord({"lr": 0.1})})


def _flips(n_bits: int, positions) -> TransferOutcome:
    return TransferOutcome(
        delivered=True,
        time_s=0.0,
        packets=1,
        attempts=1,
        bits_sent=n_bits,
        flip_positions=np.asarray(positions, dtype=np.int64),
        packets_delivered=1,
    )


def test_raw_flips_land_on_the_real_array_data_and_spare_the_framing():
    content = _content()
    n_bits = message_bytes(content) * 8
    out, flipped = _deliver(content, _flips(n_bits, np.arange(n_bits)))
    assert flipped == (3 + 2) * 4 * 8  # every data bit of both float32 arrays, none of the headers
    w = out["arrays"]["w"].numpy().view(np.uint32)
    b = out["arrays"]["b"].numpy().view(np.uint32)
    assert (w == ~np.zeros(3, np.float32).view(np.uint32)).all()
    assert (b == ~np.ones(2, np.float32).view(np.uint32)).all()
    assert content["arrays"]["w"].numpy().tolist() == [0.0, 0.0, 0.0]  # the sender's copy is untouched


def test_no_flips_delivers_the_same_content():
    content = _content()
    out, flipped = _deliver(content, _flips(100, []))
    assert flipped == 0 and list(out) == list(content) and out["config"] is content["config"]
    for name, sent in content["arrays"].items():  # the same bytes, read without np.load (`received`)
        assert type(out["arrays"][name]) is NpyArray and out["arrays"][name].data is sent.data
    assert _deliver(out, _flips(100, []))[0] is out  # nothing left to convert


def _echo_app() -> ClientApp:
    app = ClientApp()

    @app.train()
    def train(msg: Message, ctx: Context) -> Message:
        content = RecordDict(
            {
                "arrays": msg.content["arrays"],
                "metrics": MetricRecord({"num-examples": 1 + ctx.node_config["partition-id"]}),
            }
        )
        return Message(content=content, reply_to=msg)

    return app


def _grid(ber=0.0, mode="arq", mix=None, bandwidth=1e5) -> SimGrid:
    fleet = build_fleet(mix or {"rpi3_400mhz": 4}, rng=np.random.default_rng(0))
    link = Link(bandwidth_bps=bandwidth, latency_s=0.01, errors=IndependentBits(ber), mode=mode)
    net, server = plain_network(fleet, link)
    return SimGrid(fleet=fleet, net=net, server=server, client_app=_echo_app(), seed=1)


def _start(grid: SimGrid, rounds=2, timeout=3600.0):
    init = ArrayRecord.from_numpy_ndarrays([np.zeros(2000, np.float32)])
    with _flower_session(seed=1, log_level="ERROR"):
        return FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_available_nodes=2).start(
            grid=grid, initial_arrays=init, num_rounds=rounds, timeout=timeout
        )


def test_rounds_advance_the_clock_by_transfer_times():
    grid = _grid()
    _start(grid, rounds=2)
    train = [p for p in grid.phases if p.phase == "train"]
    assert [p.round for p in train] == [1, 2]
    first = train[0]
    # 8000 bytes of floats + npy header and key, 1024-byte packets + 32-byte headers, at 100 kbit/s
    row = first.clients[0]
    assert row.status == "received" and row.bytes_down == row.bytes_up > 8000
    assert row.download_s == row.bytes_down * 8 / 1e5 + 0.01
    assert first.end_s == max(c.arrival_s for c in first.clients)
    assert train[1].start_s == first.end_s and grid.now_s == train[1].end_s


def test_a_deadline_shorter_than_any_transfer_leaves_no_replies():
    grid = _grid()
    result = _start(grid, rounds=1, timeout=0.05)
    assert {c.status for c in grid.phases[0].clients} == {"straggler"}
    assert grid.phases[0].end_s == 0.05
    assert len(result.arrays) == 0  # nothing came back to aggregate


def test_raw_channel_corrupts_what_the_strategy_aggregates():
    grid = _grid(ber=1e-3, mode="raw")
    result = _start(grid, rounds=1)
    flipped = sum(c.bits_flipped for c in grid.phases[0].clients)
    assert flipped > 0
    assert not np.array_equal(result.arrays["0"].numpy(), np.zeros(2000, np.float32))


def test_the_probe_sees_each_received_train_replys_weights_as_the_client_sent_them():
    sent = {}
    app = ClientApp()

    @app.train()
    def train(msg: Message, ctx: Context) -> Message:
        arrays = ArrayRecord.from_numpy_ndarrays([np.full(2000, ctx.node_config["partition-id"] + 1.0, np.float32)])
        sent[msg.metadata.dst_node_id] = arrays
        return Message(RecordDict({"arrays": arrays, "metrics": MetricRecord({"num-examples": 1})}), reply_to=msg)

    grid = _grid(ber=1e-3, mode="raw")
    grid.client_app = app
    grid.accept_non_finite = True  # every flipped reply reaches the server, NaN or not
    seen = []
    grid.probe = lambda arrays: seen.append(arrays) or np.full((2, 3), float(len(seen)))
    _start(grid, rounds=1)
    (train_phase,) = [p for p in grid.phases if p.phase == "train"]
    received = [c.node_id for c in train_phase.clients if c.status == "received"]
    assert len(received) == 4 and sum(c.bits_flipped for c in train_phase.clients) > 0  # uplinks flipped bits
    # the probe saw the client's own weights, not what the raw channel delivered to the server
    assert sorted(id(a) for a in seen) == sorted(id(sent[n]) for n in received)
    assert [a[0, 0] for a in train_phase.activations] == [1.0, 2.0, 3.0, 4.0]


def test_memory_check_fails_devices_that_cannot_hold_the_work():
    import torch

    app = ClientApp()

    @app.train()
    def train(msg: Message, ctx: Context) -> Message:
        model = torch.nn.Linear(512, 512)  # 1 MiB of weights: more than a 512 KiB MCU holds
        model(torch.randn(4, 512)).sum().backward()
        content = RecordDict({"arrays": msg.content["arrays"], "metrics": MetricRecord({"num-examples": 1})})
        return Message(content=content, reply_to=msg)

    grid = _grid(mix={"cortex_m7_512kb": 2, "rpi3_400mhz": 2})
    grid.client_app = app
    _start(grid, rounds=1)
    by_device = {c.device: c.status for c in grid.phases[0].clients}
    assert by_device == {"cortex_m7_512kb": "out_of_memory", "rpi3_400mhz": "received"}
    oom = [c for c in grid.phases[0].clients if c.status == "out_of_memory"][0]
    assert oom.peak_memory_bytes > oom.device_memory_bytes and oom.compute_s == 0.0


class _OnlineFrom:
    """Every device offline until `t0`, then online for good."""

    def __init__(self, t0: float):
        self.t0 = t0

    def online(self, d, t):
        return t >= self.t0

    def next_change(self, d, t):
        return self.t0 if t < self.t0 else float("inf")

    def online_mask(self, t):
        return np.full(4, t >= self.t0)


def test_the_server_waits_on_the_clock_until_enough_devices_are_online():
    grid = _grid()
    grid.net.availability = _OnlineFrom(100.0)
    grid.min_nodes = 2
    assert list(grid.get_node_ids()) == [1, 2, 3, 4]
    assert 100.0 <= grid.now_s < 200.0  # it waited in simulated time, by doubling steps


def test_busy_devices_are_not_offered_and_reported_when_sampled_anyway():
    grid = _grid()
    grid.net.begin(2)  # device 2 (node 3) still works on something
    assert list(grid.get_node_ids()) == [1, 2, 4]
    grid.offer = "all"
    assert list(grid.get_node_ids()) == [1, 2, 3, 4]
    _start(grid, rounds=1)
    rows = [c for p in grid.phases for c in p.clients]
    assert {c.node_id: c.status for c in rows}[3] == "busy"


def test_a_fleet_that_never_comes_back_stops_the_wait_with_a_named_error():
    grid = _grid()
    grid.net.availability = _OnlineFrom(float("inf"))
    grid.min_nodes = 2
    with pytest.raises(FleetExhausted, match="fewer than 2 devices"):
        grid.get_node_ids()

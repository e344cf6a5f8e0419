"""NAIR on the simulated network: each method's system is one device and the edge server on one
clock; slices cross the medium (`Network.transfer`), the head and the tail take their time on the
device and the server, and their states fill the timeline. The job has one sender per system, so
a shared medium (a cell as fast as the link) changes nothing; several devices' slices contend."""

from __future__ import annotations

import math

import numpy as np

from devices import CATALOGUE
from sim.jobs import default_config
from sim.nair.timeline import TIMELINE_EPISODES, airtime_s, nair_network, simulate_link

SIZES = [512] * 8  # 2 packets of 256 bytes + 16-byte headers: 17.408 ms each at 250 kbit/s
BUDGETS = [0.05, 0.2, 1.0]
HEAD_S = 0.001


def _run(medium: str, senders: int = 1, episodes: int | None = None):
    cfg = default_config("nair")
    cfg.channel.medium = medium
    cfg.channel.bandwidth_bps, cfg.channel.latency_s, cfg.channel.ber = 250e3, 0.01, 0.0
    net, server = nair_network(cfg, CATALOGUE["rpi3_400mhz"], CATALOGUE["edge_server"], senders)
    count = senders if episodes is None else episodes
    run = simulate_link(
        net,
        server,
        [(HEAD_S, SIZES, BUDGETS)] * count,
        lambda e: np.random.default_rng(e),
        server_flops=10**6,
        senders=senders,
    )
    return net, server, run


def test_one_sender_on_a_shared_medium_is_the_dedicated_link():
    _, _, dedicated = _run("dedicated", episodes=3)
    _, _, shared = _run("shared", episodes=3)
    assert dedicated.got == shared.got
    assert [(e.episode, e.slice, e.start_s, e.end_s) for e in dedicated.log] == [
        (e.episode, e.slice, e.start_s, e.end_s) for e in shared.log
    ]
    assert dedicated.timeline == shared.timeline


def test_several_devices_slices_contend_on_a_shared_medium():
    airtime = 17.408e-3
    _, _, dedicated = _run("dedicated", senders=3)
    net, _, shared = _run("shared", senders=3)
    # dedicated: slice j (1-based) arrives at head + latency + j * airtime, for every device
    assert [len(dedicated.got[(e, b)]) for e in range(3) for b in range(3)] == [2, 8, 8] * 3
    # shared: three devices split the cell, so each slice takes three airtimes
    assert [len(shared.got[(e, b)]) for e in range(3) for b in range(3)] == [0, 3, 8] * 3
    first = [ev for ev in shared.log if ev.slice == 0]
    assert len(first) == 3 and all(math.isclose(ev.end_s - ev.start_s, 3 * airtime) for ev in first)
    assert math.isclose(airtime, airtime_s(net.links(0)[0], 512))
    # the timeline shows the three devices on the air at once
    tx = [r for r in shared.timeline if r["state"] == "transmit"]
    assert {r["device"] for r in tx} == {"device1", "device2", "device3"}
    # eight slices back to back: one transmit span per device (adjacent rows of a state merge)
    assert sum(math.isclose(r["start_s"], HEAD_S) for r in tx) == 3 and len(tx) == 3


def test_timeline_rows_cover_device_and_server_for_the_first_episodes():
    net, server, run = _run("dedicated", episodes=TIMELINE_EPISODES + 5)
    states = {(r["device"], r["state"]) for r in run.timeline}
    assert states == {("device", "compute"), ("device", "transmit"), ("server", "compute")}
    heads = [r for r in run.timeline if r["device"] == "device" and r["state"] == "compute"]
    assert len(heads) == TIMELINE_EPISODES  # the first episodes only
    tails = [r for r in run.timeline if r["device"] == "server"]
    assert len(tails) == TIMELINE_EPISODES * len(BUDGETS)  # the tail at every budget
    assert all(r["end_s"] > r["start_s"] for r in run.timeline)
    # the ledger holds every episode: head compute and airtime
    assert math.isclose(net.ledger.busy_s[0], (TIMELINE_EPISODES + 5) * (HEAD_S + 8 * 17.408e-3))
    assert server.busy_s > 0 and server.energy_j > 0

"""The offload example on the simulated network: each mode is the sensor and the edge server on
one clock. The sensor is the only device and each side's radio sends one message at a time, so
on a full-duplex cell no two transfers share a direction: a shared medium as fast as the link
changes nothing; on a half-duplex one (the default) the answers share the air with the next
images; a slower cell caps the rate. The timeline holds the sensor's and the server's states."""

from __future__ import annotations

import math

from devices import CATALOGUE
from sim.jobs import default_config
from sim.offload.timeline import Costs, offload_network, simulate

COSTS = Costs(flops=20_000, image_bytes=64)
DEVICE, SERVER = CATALOGUE["cortex_m7_512kb"], CATALOGUE["edge_server"]


def _run(mode: str, medium: str = "dedicated", period_s: float = 0.001, **channel):
    cfg = default_config("offload")
    cfg.channel.medium = medium
    for k, v in channel.items():
        setattr(cfg.channel, k, v)
    system = offload_network(cfg, DEVICE, SERVER)
    return system, simulate(mode, COSTS, 20, period_s, DEVICE, system, seed=0)


def _fates(answers):
    return [(a.latency_s, a.device_energy_j, a.bytes_sent, a.retransmissions) for a in answers]


def test_a_single_sensor_on_a_full_duplex_shared_medium_is_the_dedicated_link():
    # images every 1 ms queue behind the radio (an image takes ~1.9 ms of airtime at 1 Mbit/s)
    (dnet, _), dedicated = _run("offload", "dedicated", ber=1e-4)
    (snet, _), shared = _run("offload", "shared", ber=1e-4, duplex="full")
    assert _fates(dedicated) == _fates(shared)
    assert dnet.timeline.sorted() == snet.timeline.sorted()
    latencies = [a.latency_s for a in dedicated if a.answered]
    assert max(latencies) > 5 * latencies[0]  # they queued


def test_on_a_half_duplex_cell_answers_and_images_share_the_air():
    _, dedicated = _run("offload", "dedicated", ber=1e-4)
    _, half = _run("offload", "shared", ber=1e-4, duplex="half")
    pairs = [(d.latency_s, h.latency_s) for d, h in zip(dedicated, half) if d.answered and h.answered]
    assert all(h >= d - 1e-12 for d, h in pairs) and any(h > d for d, h in pairs)


def test_a_slower_shared_cell_caps_the_rate():
    _, fast = _run("offload", "shared", period_s=0.1)
    _, slow = _run("offload", "shared", period_s=0.1, cell_up_bps=5e5)
    for f, s in zip(fast, slow):
        up_s = f.bytes_sent * 8 / 1e6  # roughly: the image's bits (the label is one byte)
        assert s.latency_s > f.latency_s + 0.5 * up_s


def test_timeline_rows_exist_for_both_modes():
    (net, server), answers = _run("offload")
    rows = net.timeline.sorted()
    states = {(r["device"], r["state"]) for r in rows}
    assert states == {("sensor", "transmit"), ("sensor", "receive"), ("server", "compute")}
    assert server.busy_s > 0 and all(r["end_s"] > r["start_s"] for r in rows)
    (net, _), local = _run("local")
    rows = net.timeline.sorted()
    assert {(r["device"], r["state"]) for r in rows} == {("sensor", "compute")} and len(rows) == 20
    assert math.isclose(rows[0]["end_s"] - rows[0]["start_s"], DEVICE.compute_time_s(COSTS.flops))

"""NoNN on the simulated network: students' uploads queue at the aggregator's radio on either
medium, the split baseline's slices contend on a shared one, inferences of a scenario share one
clock, every working device leaves its states in the timeline, and each device pays its own
network interface's costs."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from channels import IndependentBits, Link
from devices import DeviceProfile
from experiments.nonn.inference import InferencePlan
from experiments.nonn.split import SplitLayer
from sim.nonn.system import link_systems, through_nic
from sim.nonn.timeline import DeviceLoad, simulate_inference, simulate_split

N = 4
# 1 kbit/s, no latency: a 1-byte image takes 8 ms, a student's 1000-byte features 8 s alone
LINK = Link(bandwidth_bps=1e3, latency_s=0.0, errors=IndependentBits(0.0), packet_bytes=1000, header_bytes=0)
PLAN = InferencePlan(common_flops=0, branch_flops=(1,) * N, image_bytes=1, feature_bytes=(1000,) * N, fc_flops=10)
AIRTIME = 8.0


def _profile(rate: float) -> DeviceProfile:
    return DeviceProfile("test", 1 << 20, rate, 2.0, 1.0, 0.5, 0.1, "test")


DEV, SERVER = _profile(1e6), _profile(1e9)
LOADS = [DeviceLoad(DEV, (i,)) for i in range(N)]


def _run(medium: str):
    system = link_systems(LINK, SERVER, medium)([DEV] * N)
    return system, simulate_inference(PLAN, LOADS, system, np.random.default_rng(0))


def test_uploads_queue_at_the_aggregators_radio_on_either_medium():
    _, dedicated = _run("dedicated")
    _, shared = _run("shared")
    # the aggregator receives one message at a time: each upload its own airtime, one after another
    for run in (dedicated, shared):
        assert [t.upload_s for t in run.devices] == pytest.approx([AIRTIME] * N)
        assert run.latency_s == pytest.approx(N * AIRTIME, rel=0.01) and len(run.arrived) == N
    # so a shared medium never beats a dedicated one for NoNN's own traffic
    assert shared.latency_s == pytest.approx(dedicated.latency_s)


def test_split_slices_contend_on_a_shared_medium():
    layers = [SplitLayer("a", (1, 1, 1), (0, 0, 0)), SplitLayer("b", (1, 1, 1), (1000, 1000, 1000))]
    runs = {
        m: simulate_split(layers, (1, 1, 1), 1, 0, link_systems(LINK, SERVER, m)([DEV] * 3), np.random.default_rng(0))
        for m in ("dedicated", "shared")
    }
    # three devices send two 8 s slices each at once: on one cell they take three times as long
    assert runs["shared"].latency_s > 2.5 * runs["dedicated"].latency_s


def test_every_working_device_and_the_aggregator_are_in_the_timeline():
    system = link_systems(LINK, SERVER, "shared")([DEV] * N)
    first = simulate_inference(PLAN, LOADS, system, np.random.default_rng(0), failed=frozenset({2}), deadline_s=60.0)
    rows = system.net.timeline.sorted()
    states = {(r["device"], r["state"]) for r in rows}
    for d in (0, 1, 3):
        assert {(f"{d} test", s) for s in ("receive", "compute", "transmit")} <= states
    assert not any(r["device"] == "2 test" for r in rows)  # the failed device never worked
    assert ("server", "compute") in states
    # the next inference runs on the same clock, after the first
    second = simulate_inference(PLAN, LOADS, system, np.random.default_rng(1))
    assert min(r["start_s"] for r in system.net.timeline.rows[len(rows) :]) >= first.latency_s
    assert second.latency_s == pytest.approx(N * AIRTIME, rel=0.01)


def test_split_slices_heard_at_once_are_received_once():
    system = link_systems(LINK, SERVER)([DEV] * 3)
    layers = [SplitLayer("a", (1, 1, 1), (0, 0, 0)), SplitLayer("b", (1, 1, 1), (1000, 1000, 1000))]
    out = simulate_split(layers, (1, 1, 1), 1, 0, system, np.random.default_rng(0))
    # each device sends its slice to the two others (8 s each, one at a time); it hears the two
    # others' slices, partly at once: less than 2 x 8 s of reception, at least 8 s
    for t in out.devices:
        assert t.upload_s == pytest.approx(2 * AIRTIME + 0.008)  # and its 1-byte pooled slice
        assert AIRTIME <= t.receive_s < 2 * AIRTIME


def test_each_device_pays_its_own_network_interface():
    # device 0: 2 s of stack per message and a 500 bit/s port (half the link's rate); device 1 as the link
    slow = replace(DEV, message_s=2.0, nic_bps=500.0)
    assert through_nic(LINK, slow) == replace(LINK, latency_s=2.0, bandwidth_bps=500.0)
    assert through_nic(LINK, DEV) == LINK
    plan = InferencePlan(common_flops=0, branch_flops=(0, 0), image_bytes=1, feature_bytes=(1, 1), fc_flops=0)
    loads = [DeviceLoad(slow, (0,)), DeviceLoad(DEV, (1,))]
    out = simulate_inference(plan, loads, link_systems(LINK, SERVER)([slow, DEV]), np.random.default_rng(0))
    # images: device 0 for 2 + 8/500 s, then device 1 for 8 ms; device 0's features (2.016 s)
    # wait for the radio until 2.024 s, device 1's after them
    assert [t.download_s for t in out.devices] == pytest.approx([2.016, 0.008])
    assert [t.upload_s for t in out.devices] == pytest.approx([2.016, 0.008])
    assert out.latency_s == pytest.approx(2.024 + 2.016 + 0.008)

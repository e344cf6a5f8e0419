"""The network a config builds: availability over time, per-device links, capacities, batteries,
and the settings' one-line errors."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from devices import build_fleet
from sim.config import ChannelConfig, Config, ConfigError, FleetConfig
from sim.net.availability import Renewal, uniforms
from sim.net.build import build_network, validate, with_capacity

TRACES = Path(__file__).resolve().parents[2] / "sim" / "conf" / "traces"


def _cfg(fleet: dict | None = None, channel: dict | None = None, seed: int = 0) -> Config:
    cfg = Config(seed=seed)
    return replace(
        cfg, fleet=replace(FleetConfig(), **(fleet or {})), channel=replace(ChannelConfig(), **(channel or {}))
    )


def _fleet(n: int = 30):
    return build_fleet({"rpi3_400mhz": 1.0}, n, rng=np.random.default_rng(0))


def _renewal(n: int, a: float = 0.8, on: float = 100.0) -> Renewal:
    mean_on = np.full(n, on)
    return Renewal(12345, mean_on, mean_on * (1 - a) / a)


def test_counter_based_draws_are_uniform_and_keyed():
    u = uniforms(7, np.arange(100_000, dtype=np.uint64), np.zeros(100_000, np.uint64))
    assert 0.0 < u.min() and u.max() < 1.0 and abs(u.mean() - 0.5) < 0.005
    assert not np.array_equal(u, uniforms(8, np.arange(100_000, dtype=np.uint64), np.zeros(100_000, np.uint64)))


def test_renewal_history_does_not_depend_on_who_was_asked_when():
    a, b = _renewal(50), _renewal(50)
    times = np.linspace(0, 5000, 40)
    for t in times:  # a: one device at a time; b: the whole fleet at once
        a_states = [a.online(d, t) for d in range(50)]
        assert a_states == list(b.online_mask(t))
    assert [a.next_change(d, 6000.0) for d in range(50)] == [b.next_change(d, 6000.0) for d in range(50)]


def test_renewal_is_online_the_fraction_asked_with_the_mean_durations_asked():
    n, a, on = 20_000, 0.8, 100.0
    r = _renewal(n, a, on)
    assert r.online_mask(0.0).mean() == pytest.approx(a, abs=0.01)  # starts stationary
    assert r.online_mask(1234.5).mean() == pytest.approx(a, abs=0.01)
    # an online period's length, observed from its start: one period per device
    starts = {}
    for d in range(2000):
        t = r.next_change(d, 0.0)
        if r.online(d, t):  # it came online at t; that online period lasts until the next change
            starts[d] = r.next_change(d, t) - t
    assert np.mean(list(starts.values())) == pytest.approx(on, rel=0.1)


def test_a_million_devices_cost_nothing_until_asked():
    r = _renewal(1_000_000)
    assert r._online is None  # nothing drawn yet
    mask = r.online_mask(100.0)
    assert mask.shape == (1_000_000,) and r._online.nbytes + r._until.nbytes + r._k.nbytes == 13_000_000


def test_per_device_links_are_drawn_per_device_and_seed():
    fleet = _fleet(10)
    net, _ = build_network(_cfg(channel={"links": "spread", "spread": 0.5}), fleet)
    again, _ = build_network(_cfg(channel={"links": "spread", "spread": 0.5}), fleet)
    other, _ = build_network(_cfg(channel={"links": "spread", "spread": 0.5}, seed=1), fleet)
    ups = [net.links(d)[0].bandwidth_bps for d in range(10)]
    assert ups == [again.links(d)[0].bandwidth_bps for d in range(10)]
    assert ups != [other.links(d)[0].bandwidth_bps for d in range(10)]
    assert len(set(ups)) == 10 and all(0.5e6 <= u < 1.5e6 for u in ups)
    same, _ = build_network(_cfg(), fleet)
    assert same.links(0) == same.links(9) and same.links(0)[0].bandwidth_bps == 1e6


def test_distance_links_degrade_with_distance():
    net, _ = build_network(_cfg(channel={"links": "distance", "radius_m": 200.0}), _fleet(200))
    bers = np.array([net.links(d)[1].errors.ber for d in range(200)])
    assert bers.min() < 1e-6 and bers.max() > 1e-3  # near devices clean, far ones noisy


def test_a_capacity_trace_sets_flop_rates_and_bandwidths():
    cfg = _cfg(fleet={"capacity_trace": str(TRACES / "capacity_30.csv")})
    fleet = _fleet(30)
    traced = with_capacity(cfg, fleet)
    assert not np.array_equal(traced.flops_per_s, fleet.flops_per_s)
    net, _ = build_network(cfg, traced)
    assert len({net.links(d)[0].bandwidth_bps for d in range(30)}) > 1


def test_an_availability_trace_decides_who_is_offered():
    cfg = _cfg(fleet={"availability_trace": str(TRACES / "availability_30.csv")})
    net, _ = build_network(cfg, _fleet(30))
    offered = net.offered()
    assert 0 < len(offered) < 30
    assert all(net.unavailable(d) is None for d in offered)
    assert all(net.unavailable(d) == "offline" for d in set(range(30)) - set(offered.tolist()))


def test_batteries_take_devices_out_of_the_offer():
    fleet = _fleet(4)
    cfg = _cfg(fleet={"battery_j": {"rpi3_400mhz": 10.0}})
    net, _ = build_network(cfg, fleet)
    assert len(net.offered()) == 4
    idle_w = float(fleet.idle_w.max())
    net.env.run(until=10.0 / idle_w + 1.0)  # idle draw alone empties every battery
    assert len(net.offered()) == 0 and net.unavailable(0) == "battery_depleted"
    assert net.ledger.devices_alive(net.env.now) == 0


@pytest.mark.parametrize(
    "fleet, channel, message",
    [
        ({"online_s": -1.0}, {}, "fleet.online_s=-1.0: must be a positive number"),
        ({"availability": 0.0}, {}, "fleet.availability=0.0: allowed range is (0, 1]"),
        ({}, {"cell_up_bps": 0.0}, "channel.cell_up_bps=0.0: must be a positive number"),
        ({}, {"cells": 0}, "channel.cells=0: must be an integer >= 1"),
        ({}, {"medium": "wifi"}, "channel.medium='wifi': allowed: dedicated, shared"),
        ({}, {"links": "random"}, "channel.links='random': allowed: same, spread, distance"),
        ({"battery_j": {"rpi3_400mhz": -5.0}}, {}, "fleet.battery_j.rpi3_400mhz=-5.0: must be a positive number"),
        ({"server": "cray"}, {}, "fleet.server='cray': allowed:"),
        ({"offer": "some"}, {}, "fleet.offer='some': allowed: idle, all"),
        (
            {"availability_trace": str(TRACES / "availability_30.csv"), "num_devices": 10},
            {},
            "trace names device 29 but the fleet has only 10 devices",
        ),
        ({"availability_trace": str(TRACES / "README.md")}, {}, "unknown trace format '.md'"),
        ({"capacity_trace": str(TRACES / "availability_30.csv")}, {}, "not a trace: CSV header needs device"),
    ],
)
def test_bad_network_settings_get_one_line_errors(fleet, channel, message):
    with pytest.raises(ConfigError) as info:
        validate(_cfg(fleet, channel))
    assert message in str(info.value) and "\n" not in str(info.value)

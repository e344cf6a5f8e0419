"""Tests for devices/: profiles, catalogue calibration, flat-array fleets."""

from __future__ import annotations

import numpy as np
import pytest

from devices import CATALOGUE, DeviceProfile, Fleet, build_fleet, get_profile

NAMES = ("cortex_m7_512kb", "edge_server", "odroid_xu4", "rpi3_400mhz", "rpi3_400mhz_pytorch")


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_catalogue_profiles_are_sourced() -> None:
    assert tuple(sorted(CATALOGUE)) == NAMES
    for name, p in CATALOGUE.items():
        assert p.name == name
        assert len(p.source.strip()) > 40
        assert get_profile(name) is p


@pytest.mark.parametrize(
    ("name", "measured_s", "rel"),
    [
        # fitted on the 2-student deployment (167 MFLOP per student); held out: the 8-student
        # one of the same table (NoNN paper, table 7), each device again running one student
        ("rpi3_400mhz", 0.10624, 0.05),
        ("odroid_xu4", 0.02060, 0.08),
    ],
)
def test_profiles_predict_a_measurement_they_were_not_fitted_to(name: str, measured_s: float, rel: float) -> None:
    assert get_profile(name).compute_time_s(167e6) == pytest.approx(measured_s, rel=rel)


def test_network_interfaces_differ_as_the_papers_table_7_implies() -> None:
    pi, odroid = get_profile("rpi3_400mhz"), get_profile("odroid_xu4")
    # fitted to each board's 2-student communication (13.10 and 6.00 ms): 3 messages through
    # the server and two 12,288-byte images (1460-byte segments, 58 header bytes)
    for p, comm_s in ((pi, 13.10e-3), (odroid, 6.00e-3)):
        image_s = 8 * (12288 + 9 * 58) / p.nic_bps
        assert 3 * p.message_s + 2 * image_s == pytest.approx(comm_s, rel=0.005)
    assert odroid.message_s < pi.message_s and odroid.nic_bps > pi.nic_bps
    assert get_profile("edge_server").message_s == 0.0  # its share is inside the devices' fits
    # the Pi running PyTorch (table 8): 850 ms for NoNN-8S against 150 ms with TVM
    torch_pi = get_profile("rpi3_400mhz_pytorch")
    assert torch_pi.compute_time_s(167e6) + 43.76e-3 == pytest.approx(0.850)
    assert torch_pi.message_s == pi.message_s and torch_pi.compute_w == pi.compute_w


def test_power_ordering_is_plausible() -> None:
    for p in CATALOGUE.values():
        assert p.idle_w < p.receive_w <= p.transmit_w < p.compute_w
    assert get_profile("rpi3_400mhz").compute_w == pytest.approx(3430.67e-3 / 1.405, rel=0.05)
    assert get_profile("odroid_xu4").compute_w == pytest.approx(219.07e-3 / 25e-3, rel=0.05)
    assert get_profile("cortex_m7_512kb").memory_bytes == 512 * 1024


def test_power_and_energy() -> None:
    p = get_profile("rpi3_400mhz")
    assert p.power_w("compute") == p.compute_w
    assert p.power_w("idle") == p.idle_w
    assert p.energy_j("transmit", 2.5) == pytest.approx(2.5 * p.transmit_w)
    with pytest.raises(ValueError, match="allowed: compute, transmit, receive, idle"):
        p.power_w("sleep")
    with pytest.raises(ValueError, match="seconds"):
        p.energy_j("idle", -1.0)


def test_profile_validation_names_field() -> None:
    base = dict(
        name="x", memory_bytes=1, flops_per_s=1.0, compute_w=1.0, transmit_w=1.0, receive_w=1.0, idle_w=1.0, source="s"
    )
    DeviceProfile(**base)
    for field, bad in [
        ("flops_per_s", 0.0),
        ("idle_w", -1.0),
        ("memory_bytes", 1.5),
        ("compute_w", float("nan")),
        ("memory_bytes", 0),
        ("message_s", -1.0),
        ("message_s", float("inf")),
        ("nic_bps", 0.0),
    ]:
        with pytest.raises(ValueError, match=field):
            DeviceProfile(**{**base, field: bad})


def test_get_profile_unknown() -> None:
    with pytest.raises(ValueError) as e:
        get_profile("x")
    assert str(e.value) == f"unknown device profile 'x'; allowed: {', '.join(NAMES)}"


def _counts(fleet: Fleet) -> dict[str, int]:
    return {p.name: int((fleet.kind == k).sum()) for k, p in enumerate(fleet.profiles)}


def test_fleet_from_counts() -> None:
    mix = {"rpi3_400mhz": 3, "odroid_xu4": 2}
    for n in (None, 0, 5):
        f = build_fleet(mix, n, rng=rng())
        assert len(f) == 5 and _counts(f) == mix
    with pytest.raises(ValueError, match=r"fleet\.num_devices=6: .*sum to 5"):
        build_fleet(mix, 6, rng=rng())


def test_fleet_from_fractions_largest_remainder() -> None:
    f = build_fleet({"rpi3_400mhz": 0.5, "odroid_xu4": 0.3, "cortex_m7_512kb": 0.2}, 7, rng=rng())
    # quotas 3.5 / 2.1 / 1.4 -> floors 3 / 2 / 1, the spare one goes to the largest remainder
    assert _counts(f) == {"rpi3_400mhz": 4, "odroid_xu4": 2, "cortex_m7_512kb": 1}
    # unnormalised weights; exact ties (4/3 each) go by name order
    f = build_fleet({"rpi3_400mhz": 0.25, "odroid_xu4": 0.25, "cortex_m7_512kb": 0.25}, 4, rng=rng())
    assert _counts(f) == {"cortex_m7_512kb": 2, "odroid_xu4": 1, "rpi3_400mhz": 1}
    f = build_fleet({"edge_server": 2.0, "rpi3_400mhz": 6.0}, 8, rng=rng())
    assert _counts(f) == {"edge_server": 2, "rpi3_400mhz": 6}


def test_fleet_determinism_and_interleaving() -> None:
    mix = {"rpi3_400mhz": 0.5, "cortex_m7_512kb": 0.5}
    a = build_fleet(mix, 1000, spread=0.3, rng=rng(7))
    b = build_fleet(mix, 1000, spread=0.3, rng=rng(7))
    c = build_fleet(mix, 1000, spread=0.3, rng=rng(8))
    for field in ("kind", "flops_per_s", "memory_bytes", "compute_w", "transmit_w", "receive_w", "idle_w"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.kind, c.kind)
    assert np.count_nonzero(np.diff(a.kind)) > 300  # interleaved, not two blocks


def test_fleet_spread_bounds() -> None:
    s = 0.2
    f = build_fleet({"rpi3_400mhz": 0.6, "odroid_xu4": 0.4}, 10_000, spread=s, rng=rng(1))
    base = {
        name: np.array([getattr(p, name) for p in f.profiles])[f.kind]
        for name in ("flops_per_s", "compute_w", "transmit_w", "receive_w", "idle_w")
    }
    ratios = {name: getattr(f, name) / b for name, b in base.items()}
    for r in ratios.values():
        assert r.min() >= 1 - s and r.max() <= 1 + s
        assert r.min() < 1 - 0.9 * s and r.max() > 1 + 0.9 * s  # the spread is actually used
    assert abs(np.corrcoef(ratios["flops_per_s"], ratios["compute_w"])[0, 1]) < 0.05  # independent
    np.testing.assert_array_equal(f.memory_bytes, [f.profiles[k].memory_bytes for k in f.kind])
    d = f.device(3)
    assert d.name == f.profile_name(3) and d.flops_per_s == f.flops_per_s[3]
    assert d.source == f.profiles[f.kind[3]].source


def test_fleet_without_spread_is_exact_and_read_only() -> None:
    f = build_fleet({"edge_server": 2, "cortex_m7_512kb": 3}, rng=rng())
    for i in range(len(f)):
        assert f.device(i) == get_profile(f.profile_name(i))
    mcu = np.flatnonzero(f.kind == f.profiles.index(get_profile("cortex_m7_512kb")))
    assert len(mcu) == 3 and all(f.compute_time_s(2.16e8, int(d)) == 1.0 for d in mcu)
    with pytest.raises(ValueError):
        f.flops_per_s[0] = 1.0


def test_fleet_scales() -> None:
    f = build_fleet({"cortex_m7_512kb": 0.9, "rpi3_400mhz": 0.1}, 100_000, spread=0.1, rng=rng())
    assert len(f) == 100_000 and _counts(f)["rpi3_400mhz"] == 10_000


@pytest.mark.parametrize(
    ("mix", "n", "spread", "pattern"),
    [
        ({}, 5, 0.0, r"^fleet\.mix: empty; give at least one profile from: cortex_m7_512kb, "),
        ({"nano": 1}, None, 0.0, r"^fleet\.mix: unknown device profile 'nano'; allowed: "),
        ({"rpi3_400mhz": 1}, None, 1.5, r"^fleet\.spread=1\.5: allowed range is \[0, 1\)$"),
        ({"rpi3_400mhz": 1}, None, -0.1, r"^fleet\.spread=-0\.1: allowed range"),
        ({"rpi3_400mhz": 0}, None, 0.0, r"^fleet\.mix: counts sum to 0"),
        ({"rpi3_400mhz": 0.5}, 0, 0.0, r"^fleet\.num_devices=0: a positive integer is required"),
        ({"rpi3_400mhz": 0.5}, None, 0.0, r"^fleet\.num_devices=None"),
        ({"rpi3_400mhz": 2}, -1, 0.0, r"^fleet\.num_devices=-1"),
        ({"rpi3_400mhz": -0.5}, 3, 0.0, r"^fleet\.mix\.rpi3_400mhz=-0\.5"),
        ({"rpi3_400mhz": 0.0}, 3, 0.0, r"^fleet\.mix: fractions sum to 0"),
    ],
)
def test_fleet_errors(mix: dict, n: int | None, spread: float, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        build_fleet(mix, n, spread=spread, rng=rng())

"""Tests for channels/radio.py: path loss, BER formulas, per-device link draws."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from channels import GilbertElliott, IndependentBits, Link
from channels.radio import (
    MODULATIONS,
    DeviceLink,
    LinkSpread,
    ber_from_snr,
    device_link,
    path_loss_db,
    q_function,
    snr_db,
)

BASE = Link(bandwidth_bps=1e6, latency_s=0.01, errors=IndependentBits(1e-4))
BURSTY = replace(BASE, errors=GilbertElliott.from_mean_ber(1e-4, burst_bits=50.0, bad_ber=0.05))


def db(x: float) -> float:
    return 10.0 * math.log10(x)


# ---------------------------------------------------------------- physics


def test_q_function_values() -> None:
    assert q_function(0.0) == pytest.approx(0.5)
    assert q_function(1.0) == pytest.approx(0.158655, rel=1e-5)
    assert q_function(3.0) == pytest.approx(1.349898e-3, rel=1e-5)


@pytest.mark.parametrize(("ebn0_db", "expected", "rel"), [(0.0, 0.0786, 2e-3), (4.0, 0.0125, 2e-3), (9.6, 1e-5, 0.05)])
def test_bpsk_known_values(ebn0_db: float, expected: float, rel: float) -> None:
    assert ber_from_snr(ebn0_db, "bpsk") == pytest.approx(expected, rel=rel)  # 1 bit/symbol: Es = Eb
    # the same Eb/N0 through bandwidth and bit rate: SNR * B / R
    assert ber_from_snr(ebn0_db - db(2.0), "bpsk", bandwidth_hz=2e6, bit_rate_bps=1e6) == pytest.approx(
        expected, rel=rel
    )


def test_qpsk_equals_bpsk_per_bit() -> None:
    ebn0 = np.linspace(-10.0, 12.0, 23)
    bpsk = ber_from_snr(ebn0, "bpsk")
    np.testing.assert_allclose(ber_from_snr(ebn0 + db(2.0), "qpsk"), bpsk, rtol=1e-12)  # Es/N0 = 2 Eb/N0
    np.testing.assert_allclose(ber_from_snr(ebn0, "qpsk", bandwidth_hz=1e6, bit_rate_bps=1e6), bpsk, rtol=1e-12)


@pytest.mark.parametrize("m", [16, 64])
def test_qam_against_direct_formula(m: int) -> None:
    k = int(math.log2(m))
    for esn0_db in (0.0, 5.0, 10.0, 15.0, 20.0):
        ebn0 = 10 ** (esn0_db / 10) / k
        x = math.sqrt(3 * k * ebn0 / (m - 1))
        direct = (4 / k) * (1 - 1 / math.sqrt(m)) * 0.5 * math.erfc(x / math.sqrt(2))
        assert ber_from_snr(esn0_db, f"{m}qam") == pytest.approx(direct, rel=1e-12)
    ebn0 = 10 ** (10 / 10)  # 16-QAM textbook form: (3/4) Q(sqrt(4/5 Eb/N0))
    direct16 = 0.75 * 0.5 * math.erfc(math.sqrt(0.8 * ebn0) / math.sqrt(2))
    assert ber_from_snr(10 + db(4), "16qam") == pytest.approx(direct16, rel=1e-12)


def test_fsk_formula() -> None:
    assert ber_from_snr(db(10.0), "fsk") == pytest.approx(0.5 * math.exp(-5.0), rel=1e-12)


def test_ber_vectorised_and_clipped() -> None:
    snr = np.array([[-60.0, 0.0], [10.0, 60.0]])
    for mod in MODULATIONS:
        out = ber_from_snr(snr, mod)
        assert isinstance(out, np.ndarray) and out.shape == snr.shape
        assert np.all((out >= 0) & (out <= 0.5))
        assert isinstance(ber_from_snr(3.0, mod), float)


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(MODULATIONS),
    st.floats(-40.0, 40.0, allow_nan=False),
    st.floats(0.01, 20.0, allow_nan=False),
)
def test_ber_decreases_with_snr(mod: str, snr: float, step: float) -> None:
    assert ber_from_snr(snr + step, mod) <= ber_from_snr(snr, mod)


def test_ber_from_snr_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="modulation='ook'"):
        ber_from_snr(10.0, "ook")
    with pytest.raises(ValueError, match="both bandwidth_hz and bit_rate_bps"):
        ber_from_snr(10.0, "bpsk", bandwidth_hz=1e6)
    with pytest.raises(ValueError, match="bit_rate_bps=0"):
        ber_from_snr(10.0, "bpsk", bandwidth_hz=1e6, bit_rate_bps=0)


def test_path_loss_values() -> None:
    assert path_loss_db(1.0, exponent=3.0, ref_loss_db=40.0) == pytest.approx(40.0)
    assert path_loss_db(10.0, exponent=3.0, ref_loss_db=40.0) == pytest.approx(70.0)
    assert path_loss_db(100.0, exponent=2.0, ref_loss_db=40.0) == pytest.approx(80.0)
    assert path_loss_db(0.1, exponent=3.0, ref_loss_db=40.0) == pytest.approx(40.0)  # clipped at d0
    assert path_loss_db(40.0, exponent=2.0, ref_loss_db=50.0, ref_distance_m=4.0) == pytest.approx(70.0)
    out = path_loss_db(np.array([1.0, 10.0, 1000.0]), exponent=3.5, ref_loss_db=30.0)
    np.testing.assert_allclose(out, [30.0, 65.0, 135.0])
    assert snr_db(10.0, tx_power_dbm=0.0, noise_dbm=-95.0, exponent=3.0, ref_loss_db=40.0) == pytest.approx(25.0)


# ---------------------------------------------------------------- per-device draws


def test_same_returns_base_and_draws_nothing() -> None:
    g = np.random.default_rng(3)
    state = g.bit_generator.state
    out = device_link(BASE, LinkSpread(), g)
    assert out.up is BASE and out.down is BASE
    assert math.isnan(out.distance_m) and math.isnan(out.snr_db)
    assert g.bit_generator.state == state
    asym = device_link(BASE, LinkSpread(up_scale=0.25), g)
    assert asym.down is BASE and asym.up.bandwidth_bps == 0.25e6 and asym.up.errors == BASE.errors
    assert g.bit_generator.state == state


def test_spread_factors_within_bounds() -> None:
    s = 0.3
    spread = LinkSpread(kind="spread", spread=s, up_scale=0.5)
    g = np.random.default_rng(4)
    draws = [device_link(BASE, spread, g) for _ in range(500)]
    bw_down = np.array([d.down.bandwidth_bps for d in draws]) / 1e6
    bw_up = np.array([d.up.bandwidth_bps for d in draws]) / 0.5e6
    ber = np.array([[d.down.errors.ber, d.up.errors.ber] for d in draws]) / 1e-4
    for f in (bw_down, bw_up, ber.ravel()):
        assert f.min() >= 1 - s and f.max() < 1 + s + 1e-12
        assert f.max() - f.min() > 1.5 * s  # actually spread out
    assert not np.allclose(ber[:, 0], ber[:, 1])  # directions independent
    assert all(d.down.latency_s == BASE.latency_s and d.down.mode == BASE.mode for d in draws)


def test_spread_clips_ber() -> None:
    base = replace(BASE, errors=IndependentBits(0.45))
    g = np.random.default_rng(5)
    bers = [device_link(base, LinkSpread(kind="spread", spread=0.9), g).up.errors.ber for _ in range(200)]
    assert max(bers) == 0.5 and min(bers) >= 0.45 * 0.1


def test_distance_uniform_over_disk() -> None:
    radius = 100.0
    spread = LinkSpread(kind="distance", radius_m=radius)
    g = np.random.default_rng(6)
    n = 4000
    draws = [device_link(BASE, spread, g) for _ in range(n)]
    d = np.array([x.distance_m for x in draws])
    assert d.min() >= 1.0 and d.max() <= radius
    # d^2 ~ Uniform[0, r^2]: mean r^2/2, sd r^2/sqrt(12)
    assert abs((d**2).mean() - radius**2 / 2) < 4 * radius**2 / math.sqrt(12 * n)
    x = draws[0]
    assert x.snr_db == pytest.approx(55.0 - 30.0 * math.log10(x.distance_m))
    assert x.up.errors.ber == x.down.errors.ber == pytest.approx(ber_from_snr(x.snr_db, "qpsk"))
    assert x.up.bandwidth_bps == x.down.bandwidth_bps == BASE.bandwidth_bps


def test_errors_keep_their_class() -> None:
    g = np.random.default_rng(7)
    for spread in (LinkSpread(kind="spread"), LinkSpread(kind="distance")):
        for _ in range(50):
            out = device_link(BURSTY, spread, g)
            for link in (out.up, out.down):
                e = link.errors
                assert isinstance(e, GilbertElliott)
                want = ber_from_snr(out.snr_db, "qpsk") if spread.kind == "distance" else None
                if want is not None:
                    assert e.mean_ber == pytest.approx(want, rel=1e-9, abs=1e-300)
                if e.ber_bad <= 0.05 and e.p_good_to_bad < 1.0:  # a bursty chain: burst length kept
                    assert 1.0 / e.p_bad_to_good == pytest.approx(50.0)
    iid = device_link(BASE, LinkSpread(kind="distance"), g)
    assert isinstance(iid.up.errors, IndependentBits)


def test_deterministic_per_seed() -> None:
    for kind in ("spread", "distance"):
        spread = LinkSpread(kind=kind)
        a = device_link(BURSTY, spread, np.random.default_rng(11))
        b = device_link(BURSTY, spread, np.random.default_rng(11))
        c = device_link(BURSTY, spread, np.random.default_rng(12))
        assert isinstance(a, DeviceLink)
        assert a.up == b.up and a.down == b.down
        assert a.distance_m == b.distance_m or math.isnan(a.distance_m)
        assert (a.up, a.down) != (c.up, c.down)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("kind", "random"),
        ("spread", 1.0),
        ("spread", -0.1),
        ("radius_m", 0.5),
        ("exponent", 0.0),
        ("ref_loss_db", math.inf),
        ("tx_power_dbm", "high"),
        ("noise_dbm", math.nan),
        ("modulation", "ofdm"),
        ("up_scale", 0.0),
        ("spread", True),
    ],
)
def test_validation_names_the_setting(field: str, value: object) -> None:
    with pytest.raises(ValueError) as info:
        LinkSpread(**{field: value})
    msg = str(info.value)
    setting = "links" if field == "kind" else field  # LinkSpread.kind is the setting channel.links
    assert msg.startswith(f"channel.{setting}={value!r}: ") and "\n" not in msg

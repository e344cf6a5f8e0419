"""Tests for channels/: bit-error models, ARQ/raw transfers, bit flipping."""

from __future__ import annotations

import math

import numpy as np
import pytest

from channels import (
    GilbertElliott,
    IndependentBits,
    Link,
    corrupt_arrays,
    flip_bits,
    transfer,
)

L_FULL = (1024 + 32) * 8  # bits per full packet with default Link sizes


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# ---------------------------------------------------------------- independent bits


def test_iid_flip_rate_matches_ber() -> None:
    n, ber = 4_000_000, 1e-3
    pos = IndependentBits(ber).flip_positions(n, rng())
    assert pos.dtype == np.int64
    assert np.all(np.diff(pos) > 0) and pos[0] >= 0 and pos[-1] < n
    assert abs(pos.size - n * ber) < 4 * math.sqrt(n * ber * (1 - ber))
    # positions uniform: mean position is n/2 within 4 sigma of a uniform mean
    assert abs(pos.mean() - (n - 1) / 2) < 4 * n / math.sqrt(12 * pos.size)


def test_iid_flip_count_is_binomial() -> None:
    n, ber, reps = 10_000, 0.01, 2000
    model, g = IndependentBits(ber), rng(1)
    k = np.array([model.flip_positions(n, g).size for _ in range(reps)])
    mean, var = n * ber, n * ber * (1 - ber)
    assert abs(k.mean() - mean) < 4 * math.sqrt(var / reps)
    assert abs(k.var(ddof=1) - var) < 4 * var * math.sqrt(2 / (reps - 1))


def test_iid_edge_cases() -> None:
    assert IndependentBits(0.0).flip_positions(10**9, rng()).size == 0
    assert IndependentBits(0.1).flip_positions(0, rng()).size == 0
    pos = IndependentBits(0.5).flip_positions(100_000, rng())
    assert abs(pos.size - 50_000) < 4 * math.sqrt(25_000)
    assert np.unique(pos).size == pos.size
    assert IndependentBits(0.5).attempts_corrupted(100, L_FULL, rng()).all()


def test_iid_packet_corruption_probability() -> None:
    ber, n = 4e-5, 200_000
    model = IndependentBits(ber)
    p = -math.expm1(L_FULL * math.log1p(-ber))
    assert model.packet_error_prob(L_FULL) == pytest.approx(1 - (1 - ber) ** L_FULL, rel=1e-9)
    c = model.attempts_corrupted(n, L_FULL, rng())
    assert c.dtype == bool and c.shape == (n,)
    assert abs(c.mean() - p) < 4 * math.sqrt(p * (1 - p) / n)


# ---------------------------------------------------------------- Gilbert-Elliott


def test_ge_mean_ber_and_burstiness() -> None:
    ge = GilbertElliott.from_mean_ber(1e-3, burst_bits=100, bad_ber=0.1)
    assert ge.mean_ber == pytest.approx(1e-3, rel=1e-12)
    assert ge.stationary_bad == pytest.approx(0.01)
    n, reps, g = 1_000_000, 40, rng(2)
    draws = [ge.flip_positions(n, g) for _ in range(reps)]
    rates = np.array([d.size / n for d in draws])
    assert abs(rates.mean() - ge.mean_ber) < 4 * rates.std(ddof=1) / math.sqrt(reps)
    for d in draws[:3]:
        assert np.all(np.diff(d) > 0) and d[0] >= 0 and d[-1] < n

    def dispersion(pos: np.ndarray, window: int = 1000) -> float:
        counts = np.bincount(pos // window, minlength=n // window)
        p = pos.size / n
        return counts.var() / (window * p * (1 - p))

    ge_disp = np.mean([dispersion(d) for d in draws[:5]])
    iid = IndependentBits(1e-3)
    iid_disp = np.mean([dispersion(iid.flip_positions(n, g)) for _ in range(5)])
    assert ge_disp > 5.0  # bursty: far more variable than binomial
    assert 0.8 < iid_disp < 1.2  # the same statistic on i.i.d. bits is ~1


def test_ge_packet_corruption_matches_exact_probability() -> None:
    ge = GilbertElliott(p_good_to_bad=2e-6, p_bad_to_good=5e-3, ber_good=1e-6, ber_bad=0.02)
    p = ge.packet_error_prob(L_FULL)
    g, m = rng(3), 2000
    fr = np.array([ge.attempts_corrupted(m, L_FULL, g).mean() for _ in range(60)])
    assert abs(fr.mean() - p) < 4 * fr.std(ddof=1) / math.sqrt(fr.size)
    # independent path: packets holding >= 1 flip of a bit-level sample of the same stream
    fr2 = np.array([np.unique(ge.flip_positions(m * L_FULL, g) // L_FULL).size / m for _ in range(60)])
    assert abs(fr2.mean() - p) < 4 * fr2.std(ddof=1) / math.sqrt(fr2.size)
    # the same mean BER spread evenly corrupts many more packets than in bursts
    assert IndependentBits(ge.mean_ber).packet_error_prob(L_FULL) > 2 * p


def test_ge_degenerate_chains() -> None:
    never_bad = GilbertElliott(0.0, 0.1, 1e-3, 0.5)
    assert never_bad.mean_ber == pytest.approx(1e-3)
    k = never_bad.flip_positions(1_000_000, rng()).size
    assert abs(k - 1000) < 4 * math.sqrt(1000)
    always_bad = GilbertElliott.from_mean_ber(0.2, bad_ber=0.1)  # bad_ber raised to ber
    assert always_bad.stationary_bad == 1.0 and always_bad.mean_ber == pytest.approx(0.2)
    assert GilbertElliott.from_mean_ber(0.0).flip_positions(10**6, rng()).size == 0
    assert not GilbertElliott.from_mean_ber(0.0).attempts_corrupted(100, L_FULL, rng()).any()


# ---------------------------------------------------------------- transfers


def test_arq_mean_attempts_and_exact_time() -> None:
    p_target = 0.3
    ber = -math.log1p(-p_target) / L_FULL
    link = Link(bandwidth_bps=2e6, latency_s=0.005, errors=IndependentBits(ber), max_attempts=50)
    packets, reps, g = 10, 2000, rng(4)
    total = 0
    for _ in range(reps):
        out = transfer(link, packets * 1024, g)
        assert out.delivered and out.packets == packets == out.packets_delivered
        assert out.bits_sent == out.attempts * L_FULL
        assert out.time_s == link.latency_s + out.bits_sent / link.bandwidth_bps
        assert out.flip_positions.size == 0 and out.retransmissions == out.attempts - packets
        total += out.attempts
    n = packets * reps
    assert abs(total - n / (1 - p_target)) < 4 * math.sqrt(n * p_target) / (1 - p_target)


def test_arq_bursty_channel_delivers() -> None:
    link = Link(1e6, 0.0, GilbertElliott.from_mean_ber(1e-4), max_attempts=20)
    out = transfer(link, 5_000_000, rng(5))
    assert out.delivered and out.packets == math.ceil(5_000_000 / 1024)
    assert out.attempts > out.packets


def test_arq_gives_up() -> None:
    link = Link(1e6, 0.01, IndependentBits(1e-2), max_attempts=3)
    out = transfer(link, 10_000, rng())
    assert not out.delivered and out.packets_delivered == 0
    assert out.attempts == 3 and out.retransmissions == 3
    assert out.time_s == 0.01 + 3 * L_FULL / 1e6
    # mid-transfer give-up: 50% packet loss, 2 tries each, 200 packets
    link = Link(1e6, 0.0, IndependentBits(-math.log1p(-0.5) / L_FULL), max_attempts=2)
    out = transfer(link, 200 * 1024, rng(6))
    assert not out.delivered and out.packets_delivered < out.packets
    assert out.retransmissions >= 2 and out.attempts >= out.packets_delivered + 2
    assert out.bits_sent == out.attempts * L_FULL


def test_error_free_and_empty_transfers() -> None:
    for mode in ("arq", "raw"):
        link = Link(1e6, 0.02, IndependentBits(0.0), mode=mode)
        out = transfer(link, 1500, rng())
        assert out.delivered and out.packets == out.attempts == 2 and out.retransmissions == 0
        assert out.bits_flipped == 0
        assert out.bits_sent == (1024 + 32 + 476 + 32) * 8  # last packet at its real size
        empty = transfer(link, 0, rng())
        assert empty.delivered and empty.packets == empty.attempts == empty.bits_sent == 0
        assert empty.time_s == 0.02


def test_raw_mode_flips_payload_bits() -> None:
    n_bytes, ber = 500_000, 1e-3
    link = Link(1e6, 0.0, IndependentBits(ber), mode="raw")
    out = transfer(link, n_bytes, rng(7))
    packets = math.ceil(n_bytes / 1024)
    assert out.delivered and out.attempts == out.packets == packets
    assert out.bits_sent == 8 * n_bytes + 8 * 32 * packets
    n_bits = 8 * n_bytes
    assert abs(out.bits_flipped - n_bits * ber) < 4 * math.sqrt(n_bits * ber)
    assert out.flip_positions.max() < n_bits


def test_transfer_is_deterministic() -> None:
    link = Link(1e6, 0.0, GilbertElliott.from_mean_ber(1e-4))
    a, b = transfer(link, 300_000, rng(9)), transfer(link, 300_000, rng(9))
    assert (a.attempts, a.time_s) == (b.attempts, b.time_s)
    raw = Link(1e6, 0.0, GilbertElliott.from_mean_ber(1e-3), mode="raw")
    np.testing.assert_array_equal(
        transfer(raw, 10**5, rng(9)).flip_positions, transfer(raw, 10**5, rng(9)).flip_positions
    )


# ---------------------------------------------------------------- bit flipping


def test_flip_bits_round_trip_and_bit_order() -> None:
    g = rng(10)
    buf = g.integers(0, 256, size=(4, 64), dtype=np.uint8)
    orig = buf.copy()
    pos = np.sort(g.choice(buf.size * 8, size=300, replace=False))
    flip_bits(buf, pos)
    diff = np.unpackbits(buf ^ orig, bitorder="little")  # bit i = byte i//8, bit i%8
    np.testing.assert_array_equal(np.flatnonzero(diff), pos)
    flip_bits(buf, pos[::-1])  # order does not matter
    np.testing.assert_array_equal(buf, orig)
    with pytest.raises(ValueError):
        flip_bits(buf, [buf.size * 8])
    with pytest.raises(ValueError):
        flip_bits(buf.astype(np.int16), [0])


def test_corrupt_arrays_across_boundaries() -> None:
    a = np.array([1.0, 2.0], dtype=np.float32)  # bits 0..63
    b = np.array([[7, -3, 0]], dtype=np.int16)  # bits 64..111
    pos = [0, 63, 64, 100, 111]
    ca, cb = corrupt_arrays([a, b], pos)
    assert ca.dtype == a.dtype and cb.shape == b.shape and cb.dtype == b.dtype
    np.testing.assert_array_equal(a, [1.0, 2.0])  # inputs untouched
    before = np.concatenate([a.view(np.uint8), b.reshape(-1).view(np.uint8)])
    after = np.concatenate([ca.view(np.uint8), cb.reshape(-1).view(np.uint8)])
    np.testing.assert_array_equal(np.flatnonzero(np.unpackbits(before ^ after, bitorder="little")), pos)


def test_corrupt_float32_changes_value() -> None:
    one = np.array([1.0], dtype=np.float32)
    (x,) = corrupt_arrays([one], [30])  # top exponent bit (little-endian memory order)
    assert np.isinf(x[0])
    (y,) = corrupt_arrays([one], [31])  # sign bit
    assert y[0] == -1.0
    (z,) = corrupt_arrays([one], [0])
    assert z[0] != 1.0 and abs(z[0] - 1.0) < 1e-6


# ---------------------------------------------------------------- validation


def test_validation_messages_name_the_setting() -> None:
    with pytest.raises(ValueError) as e:
        IndependentBits(2.0)
    assert str(e.value) == "channel.ber=2.0: allowed range is [0, 0.5]"
    cases = [
        (lambda: GilbertElliott(1.5, 0.1, 0.0, 0.1), r"channel\.p_good_to_bad=1\.5: allowed range is \[0, 1\]"),
        (lambda: GilbertElliott(0.1, -0.1, 0.0, 0.1), r"channel\.p_bad_to_good"),
        (lambda: GilbertElliott(0.1, 0.1, 0.0, 0.7), r"channel\.ber_bad=0\.7"),
        (lambda: GilbertElliott(0.0, 0.0, 0.0, 0.1), r"channel\.p_good_to_bad=0"),
        (lambda: GilbertElliott.from_mean_ber(0.6), r"channel\.ber=0\.6"),
        (lambda: GilbertElliott.from_mean_ber(1e-3, burst_bits=0), r"channel\.burst_bits"),
        (lambda: Link(0.0, 0.0, IndependentBits(0.0)), r"channel\.bandwidth_bps=0\.0"),
        (lambda: Link(1e6, -1.0, IndependentBits(0.0)), r"channel\.latency_s=-1\.0"),
        (lambda: Link(1e6, 0.0, IndependentBits(0.0), mode="tcp"), r"channel\.mode='tcp': allowed: arq, raw"),
        (lambda: Link(1e6, 0.0, IndependentBits(0.0), packet_bytes=0), r"channel\.packet_bytes=0"),
        (lambda: Link(1e6, 0.0, IndependentBits(0.0), header_bytes=-1), r"channel\.header_bytes=-1"),
        (lambda: Link(1e6, 0.0, IndependentBits(0.0), max_attempts=0), r"channel\.max_attempts=0"),
        (lambda: Link(1e6, 0.0, 1e-3), r"channel\.errors=0\.001"),
        (lambda: transfer(Link(1e6, 0.0, IndependentBits(0.0)), -5, rng()), r"payload_bytes=-5"),
    ]
    for make, pattern in cases:
        with pytest.raises(ValueError, match=pattern):
            make()


class _Scripted:
    """Replays a fixed corrupted/clean attempt stream, whatever block sizes are asked for."""

    def __init__(self, stream: np.ndarray, p: float) -> None:
        self.stream, self.pos, self.p = stream, 0, p

    def packet_error_prob(self, bits: int) -> float:
        return self.p

    def attempts_corrupted(self, n: int, bits: int, g: np.random.Generator) -> np.ndarray:
        out = self.stream[self.pos : self.pos + n]
        self.pos += n
        assert out.size == n, "asked for more attempts than a transfer can need"
        return out


def _arq_reference(stream: np.ndarray, packets: int, max_attempts: int) -> tuple[int, int]:
    done = made = fails = 0
    for corrupted in stream:
        made += 1
        if corrupted:
            fails += 1
            if fails == max_attempts:
                return done, made
        else:
            done, fails = done + 1, 0
            if done == packets:
                return done, made
    raise AssertionError("stream too short")


@pytest.mark.parametrize("chunk", [1, 3, 7, 1 << 16])
def test_arq_stream_matches_per_attempt_reference(monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    import channels.link as link_mod

    monkeypatch.setattr(link_mod, "_CHUNK", chunk)
    monkeypatch.setattr(link_mod, "_FIRST_BLOCK", max(1, chunk // 4))
    g = rng(11)
    for trial in range(300):
        packets, max_attempts = int(g.integers(1, 12)), int(g.integers(1, 5))
        p = float(g.choice([0.0, 0.2, 0.5, 0.8, 1.0]))
        stream = g.random(packets * max_attempts) < p
        got = link_mod._arq_stream(_Scripted(stream, p), packets, 100, max_attempts, g)
        assert got == _arq_reference(stream, packets, max_attempts), (trial, stream, packets)

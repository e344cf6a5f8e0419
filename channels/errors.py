"""Bit-error models: pure functions of (size, rng). No clock, no state between calls.

Both models sample exactly (in distribution) from their per-bit processes: flips of i.i.d.
Bernoulli(ber) bits are drawn as a renewal process with Geometric(ber) gaps, which gives a
Binomial(n, ber) count and uniformly placed distinct positions, already sorted, in O(flips).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

_EMPTY = np.empty(0, dtype=np.int64)


def _real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_ber(name: str, value: float) -> None:
    if not _real(value) or not 0 <= value <= 0.5:
        raise ValueError(f"{name}={value!r}: allowed range is [0, 0.5]")


def _check_prob(name: str, value: float) -> None:
    if not _real(value) or not 0 <= value <= 1:
        raise ValueError(f"{name}={value!r}: allowed range is [0, 1]")


def _check_count(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name}={value!r}: must be an integer >= 0")
    return int(value)


def _any_error_prob(bits: np.ndarray | float, ber: float) -> np.ndarray | float:
    """P(at least one flip in `bits` i.i.d. bits) = 1 - (1-ber)^bits, computed stably."""
    return -np.expm1(np.multiply(bits, math.log1p(-ber)))


def _geometric(p: float, size: int, rng: np.random.Generator) -> np.ndarray:
    """Geometric(p) on {1, 2, ...} as float64 (inf when p == 0), by exponential inversion."""
    if p <= 0:
        return np.full(size, np.inf)
    rate = -math.log1p(-p) if p < 1 else math.inf
    return np.maximum(np.ceil(rng.standard_exponential(size) / rate), 1.0)


def _bernoulli_positions(n_bits: int, ber: float, rng: np.random.Generator) -> np.ndarray:
    """Sorted positions in [0, n_bits) of i.i.d. Bernoulli(ber) bits equal to 1."""
    if n_bits <= 0 or ber <= 0:
        return _EMPTY.copy()
    mean = n_bits * ber
    cap = 1 << 22  # bounds memory per round for dense errors
    chunk = min(int(mean + 6.0 * math.sqrt(mean) + 16), cap)
    parts: list[np.ndarray] = []
    last = -1.0  # position of the previous flip; float64 is exact for integers < 2**53
    while True:
        pos = last + np.cumsum(_geometric(ber, chunk, rng))
        if pos[-1] >= n_bits:
            parts.append(pos[: np.searchsorted(pos, n_bits)])
            break
        parts.append(pos)
        last = float(pos[-1])
        rest = (n_bits - last) * ber
        chunk = min(int(rest + 6.0 * math.sqrt(rest) + 16), cap)
    return np.concatenate(parts).astype(np.int64)


@dataclass(frozen=True)
class IndependentBits:
    """Each bit flips independently with probability `ber` (binary symmetric channel)."""

    ber: float

    def __post_init__(self) -> None:
        _check_ber("channel.ber", self.ber)

    @property
    def mean_ber(self) -> float:
        return float(self.ber)

    def packet_error_prob(self, bits_per_attempt: int) -> float:
        """P(a packet of `bits_per_attempt` bits has at least one flipped bit)."""
        return float(_any_error_prob(float(bits_per_attempt), self.ber))

    def flip_positions(self, n_bits: int, rng: np.random.Generator) -> np.ndarray:
        """Sorted unique flipped positions in [0, n_bits); count ~ Binomial(n_bits, ber)."""
        return _bernoulli_positions(_check_count("n_bits", n_bits), self.ber, rng)

    def attempts_corrupted(self, n_attempts: int, bits_per_attempt: int, rng: np.random.Generator) -> np.ndarray:
        """Whether each of `n_attempts` packets has >= 1 bit error (i.i.d. across packets)."""
        n = _check_count("n_attempts", n_attempts)
        _check_count("bits_per_attempt", bits_per_attempt)
        p = self.packet_error_prob(bits_per_attempt)
        if p == 0.0:
            return np.zeros(n, dtype=bool)
        return rng.random(n) < p


@dataclass(frozen=True)
class GilbertElliott:
    """Two-state (good/bad) Markov chain per bit, bit error rate `ber_good` / `ber_bad`.

    Each call samples a fresh chain started from its stationary distribution.
    """

    p_good_to_bad: float
    p_bad_to_good: float
    ber_good: float
    ber_bad: float

    def __post_init__(self) -> None:
        _check_prob("channel.p_good_to_bad", self.p_good_to_bad)
        _check_prob("channel.p_bad_to_good", self.p_bad_to_good)
        if self.p_good_to_bad + self.p_bad_to_good == 0:
            raise ValueError("channel.p_good_to_bad=0 and channel.p_bad_to_good=0: at least one must be > 0")
        _check_ber("channel.ber_good", self.ber_good)
        _check_ber("channel.ber_bad", self.ber_bad)

    @classmethod
    def from_mean_ber(cls, ber: float, *, burst_bits: float = 100.0, bad_ber: float = 0.1) -> GilbertElliott:
        """Bursty model with mean BER `ber`: error-free good state, bad state of mean length
        `burst_bits` bits with BER `bad_ber` (raised to `ber` if lower). Defaults are modelling
        choices, not measurements."""
        _check_ber("channel.ber", ber)
        if not _real(burst_bits) or not burst_bits >= 1:
            raise ValueError(f"channel.burst_bits={burst_bits!r}: must be >= 1")
        if not _real(bad_ber) or not 0 < bad_ber <= 0.5:
            raise ValueError(f"channel.bad_ber={bad_ber!r}: allowed range is (0, 0.5]")
        bad_ber = max(float(bad_ber), float(ber))
        pi_bad = ber / bad_ber
        p_bg = 1.0 / float(burst_bits)
        if pi_bad >= 1.0:
            return cls(1.0, 0.0, float(ber), float(ber))
        p_gb = p_bg * pi_bad / (1.0 - pi_bad)
        if p_gb > 1.0:  # bursts too short for this bad fraction: shorten the good state instead
            p_gb, p_bg = 1.0, (1.0 - pi_bad) / pi_bad
        return cls(p_gb, p_bg, 0.0, bad_ber)

    @property
    def stationary_bad(self) -> float:
        """Long-run fraction of bits sent in the bad state."""
        return self.p_good_to_bad / (self.p_good_to_bad + self.p_bad_to_good)

    @property
    def mean_ber(self) -> float:
        pi_b = self.stationary_bad
        return (1.0 - pi_b) * self.ber_good + pi_b * self.ber_bad

    def packet_error_prob(self, bits_per_attempt: int) -> float:
        """Stationary P(a packet of `bits_per_attempt` bits has >= 1 error) (exact, 2x2 algebra)."""
        n = _check_count("bits_per_attempt", bits_per_attempt)
        if n == 0:
            return 0.0
        pi_b = self.stationary_bad
        pi = np.array([1.0 - pi_b, pi_b])
        ok = np.array([1.0 - self.ber_good, 1.0 - self.ber_bad])
        a, b = self.p_good_to_bad, self.p_bad_to_good
        step = np.array([[1.0 - a, a], [b, 1.0 - b]]) * ok  # transition, then next bit error-free
        clean = pi * ok @ np.linalg.matrix_power(step, n - 1) @ np.ones(2)
        return float(1.0 - clean)

    def _runs(self, n_bits: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """State runs covering [0, n_bits): run end positions (exclusive, last == n_bits) and
        whether each run is bad. Sojourns are Geometric; the first state is stationary."""
        bad_first = bool(rng.random() < self.stationary_bad)
        p_leave = (self.p_bad_to_good, self.p_good_to_bad) if bad_first else (self.p_good_to_bad, self.p_bad_to_good)
        mean_pair = sum(1.0 / p if p > 0 else math.inf for p in p_leave)
        ends: list[np.ndarray] = []
        done = 0.0
        while done < n_bits:
            pairs = int(min((n_bits - done) / mean_pair * 1.1 + 8, (n_bits - done) // 2 + 1))
            seg = np.empty(2 * pairs)
            seg[0::2] = _geometric(p_leave[0], pairs, rng)
            seg[1::2] = _geometric(p_leave[1], pairs, rng)
            cum = done + np.cumsum(seg)
            ends.append(cum)
            done = float(cum[-1])
        end = np.concatenate(ends)
        k = int(np.searchsorted(end, n_bits)) + 1  # runs needed to reach n_bits
        end = np.minimum(end[:k], n_bits).astype(np.int64)
        bad = (np.arange(k) % 2 == 0) == bad_first
        return end, bad

    def flip_positions(self, n_bits: int, rng: np.random.Generator) -> np.ndarray:
        """Sorted unique flipped positions in [0, n_bits), sampled exactly from the chain."""
        n = _check_count("n_bits", n_bits)
        if n == 0 or self.mean_ber == 0:
            return _EMPTY.copy()
        end, bad = self._runs(n, rng)
        start = np.concatenate(([0], end[:-1]))
        out = []
        for is_bad, ber in ((False, self.ber_good), (True, self.ber_bad)):
            sel = bad == is_bad
            if ber == 0 or not sel.any():
                continue
            s, length = start[sel], end[sel] - start[sel]
            # Flips of this state's bits, concatenated, are i.i.d.: sample, then map back.
            vend = np.cumsum(length)
            v = _bernoulli_positions(int(vend[-1]), ber, rng)
            j = np.searchsorted(vend, v, side="right")
            out.append(v - (vend[j] - length[j]) + s[j])
        if not out:
            return _EMPTY.copy()
        return np.sort(np.concatenate(out))

    def attempts_corrupted(self, n_attempts: int, bits_per_attempt: int, rng: np.random.Generator) -> np.ndarray:
        """Whether each of `n_attempts` back-to-back packets has >= 1 bit error; the chain runs
        over the whole bit stream, so this is exact (runs are cut at packet boundaries)."""
        m = _check_count("n_attempts", n_attempts)
        size = _check_count("bits_per_attempt", bits_per_attempt)
        if m == 0 or size == 0 or self.mean_ber == 0:
            return np.zeros(m, dtype=bool)
        end, bad = self._runs(m * size, rng)
        cuts = np.union1d(end[:-1], np.arange(1, m, dtype=np.int64) * size)
        lo = np.concatenate(([0], cuts))
        hi = np.concatenate((cuts, [m * size]))
        state_bad = bad[np.searchsorted(end, lo, side="right")]
        ber = np.where(state_bad, self.ber_bad, self.ber_good)
        p_hit = -np.expm1((hi - lo) * np.log1p(-ber))
        hit = rng.random(lo.shape[0]) < p_hit
        out = np.zeros(m, dtype=bool)
        out[lo[hit] // size] = True
        return out

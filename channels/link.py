"""A point-to-point link: one transfer is a pure function of (link, payload size, rng)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .errors import GilbertElliott, IndependentBits

MODES: tuple[str, ...] = ("arq", "raw")


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Link:
    """Packetised link. `arq`: each packet (payload + header/CRC) is resent until it arrives
    error-free, giving up after `max_attempts` tries of one packet. `raw`: every packet sent
    once, no integrity check; payload bit errors are delivered to the receiver."""

    bandwidth_bps: float
    latency_s: float
    errors: IndependentBits | GilbertElliott
    mode: str = "arq"
    packet_bytes: int = 1024  # payload bytes per packet
    header_bytes: int = 32  # per-packet header + CRC overhead
    max_attempts: int = 8  # per packet, arq only

    def __post_init__(self) -> None:
        if not _is_real(self.bandwidth_bps) or self.bandwidth_bps <= 0:
            raise ValueError(f"channel.bandwidth_bps={self.bandwidth_bps!r}: must be finite and > 0")
        if not _is_real(self.latency_s) or self.latency_s < 0:
            raise ValueError(f"channel.latency_s={self.latency_s!r}: must be finite and >= 0")
        if not isinstance(self.errors, (IndependentBits, GilbertElliott)):
            raise ValueError(f"channel.errors={self.errors!r}: must be IndependentBits or GilbertElliott")
        if self.mode not in MODES:
            raise ValueError(f"channel.mode={self.mode!r}: allowed: {', '.join(MODES)}")
        if not _is_int(self.packet_bytes) or self.packet_bytes < 1:
            raise ValueError(f"channel.packet_bytes={self.packet_bytes!r}: must be an integer >= 1")
        if not _is_int(self.header_bytes) or self.header_bytes < 0:
            raise ValueError(f"channel.header_bytes={self.header_bytes!r}: must be an integer >= 0")
        if not _is_int(self.max_attempts) or self.max_attempts < 1:
            raise ValueError(f"channel.max_attempts={self.max_attempts!r}: must be an integer >= 1")


@dataclass(frozen=True, eq=False)
class TransferOutcome:
    """Result of one transfer. `flip_positions` are payload bit positions (raw mode; empty
    in arq mode). `packets_delivered` < `packets` only when an arq transfer gave up."""

    delivered: bool
    time_s: float
    packets: int
    attempts: int
    bits_sent: int
    flip_positions: np.ndarray
    packets_delivered: int

    @property
    def retransmissions(self) -> int:
        """Failed attempts (= attempts - packets for a delivered transfer)."""
        return self.attempts - self.packets_delivered

    @property
    def bits_flipped(self) -> int:
        return int(self.flip_positions.shape[0])


_FIRST_BLOCK = 256  # attempts drawn first; blocks then double up to _CHUNK, so a transfer that
_CHUNK = 1 << 16  # gives up early (high BER) draws little, and memory stays bounded


def _arq_stream(
    errors: IndependentBits | GilbertElliott,
    packets: int,
    bits: int,
    max_attempts: int,
    rng: np.random.Generator,
) -> tuple[int, int]:
    """(packets delivered, attempts made) for `packets` equal-size packets sent back to back.

    Attempt outcomes are drawn in blocks (at most the expected need + 6 sd, doubling from
    _FIRST_BLOCK to _CHUNK); a Gilbert-Elliott chain restarts from stationarity at each block.
    """
    p = errors.packet_error_prob(bits)
    if p == 0.0:  # an error-free link: every packet arrives at its first attempt, nothing drawn
        return packets, packets
    done = made = fails = 0  # packets delivered, attempts made, failures of the current packet
    cap = _FIRST_BLOCK
    while done < packets:
        left = packets - done
        need = left * max_attempts - fails
        if p < 1.0:
            need = min(need, int(1.02 * left / (1 - p) + 6 * math.sqrt(left * p) / (1 - p) + 16))
        block = errors.attempts_corrupted(max(1, min(need, cap, _CHUNK)), bits, rng)
        cap *= 2
        ok = np.flatnonzero(~block)[:left]  # in-block index where successive packets land
        starts = np.concatenate(([-fails], ok[:-1] + 1))
        over = np.flatnonzero(ok - starts + 1 > max_attempts)
        if over.size:  # packet failed max_attempts times in a row: give up
            j = int(over[0])
            return done + j, made + int(starts[j]) + max_attempts
        if ok.size == left:
            return packets, made + int(ok[-1]) + 1
        fails = block.size - (int(ok[-1]) + 1 if ok.size else -fails)
        done += ok.size
        made += block.size
        if fails >= max_attempts:
            return done, made - fails + max_attempts
    return done, made


def transfer(link: Link, payload_bytes: int, rng: np.random.Generator) -> TransferOutcome:
    """Send `payload_bytes` over `link`.

    Packets carry `packet_bytes` of payload; the last carries the remainder (its real size is
    used for both its error probability and its airtime). Every attempt also carries
    `header_bytes`. time_s = latency_s + bits_sent / bandwidth_bps (one latency per transfer;
    acknowledgements are not modelled). In raw mode errors hit payload bits only.
    """
    if not _is_int(payload_bytes) or payload_bytes < 0:
        raise ValueError(f"payload_bytes={payload_bytes!r}: must be an integer >= 0")
    n = int(payload_bytes)
    n_full, rem = divmod(n, link.packet_bytes)
    packets = n_full + (rem > 0)
    hdr_bits = 8 * link.header_bytes
    full_bits = 8 * link.packet_bytes + hdr_bits
    last_bits = 8 * rem + hdr_bits
    flips = np.empty(0, dtype=np.int64)

    if link.mode == "raw":
        attempts = delivered_packets = packets
        bits_sent = 8 * n + packets * hdr_bits
        flips = link.errors.flip_positions(8 * n, rng)
    else:
        delivered_packets, att_full = _arq_stream(link.errors, n_full, full_bits, link.max_attempts, rng)
        att_last = 0
        if rem and delivered_packets == n_full:
            ok = np.flatnonzero(~link.errors.attempts_corrupted(link.max_attempts, last_bits, rng))
            att_last = int(ok[0]) + 1 if ok.size else link.max_attempts
            delivered_packets += int(ok.size > 0)
        attempts = att_full + att_last
        bits_sent = att_full * full_bits + att_last * last_bits

    return TransferOutcome(
        delivered=delivered_packets == packets,
        time_s=link.latency_s + bits_sent / link.bandwidth_bps,
        packets=packets,
        attempts=attempts,
        bits_sent=bits_sent,
        flip_positions=flips,
        packets_delivered=delivered_packets,
    )


def flip_bits(buf: np.ndarray, positions: np.ndarray | Sequence[int]) -> None:
    """Flip, in place, bit positions of a writable C-contiguous uint8 buffer.
    Bit i is bit (i % 8), least significant first, of byte i // 8. Repeated positions cancel."""
    if not isinstance(buf, np.ndarray) or buf.dtype != np.uint8:
        raise ValueError("flip_bits: buf must be a numpy uint8 array")
    if not (buf.flags.writeable and buf.flags.c_contiguous):
        raise ValueError("flip_bits: buf must be writable and C-contiguous")
    pos = np.sort(np.asarray(positions, dtype=np.int64).ravel())
    if pos.size == 0:
        return
    flat = buf.reshape(-1)
    if pos[0] < 0 or pos[-1] >= 8 * flat.size:
        raise ValueError(f"flip_bits: positions must lie in [0, {8 * flat.size})")
    byte = pos >> 3
    mask = np.left_shift(1, pos & 7).astype(np.uint8)
    first = np.flatnonzero(np.diff(byte, prepend=-1))
    flat[byte[first]] ^= np.bitwise_xor.reduceat(mask, first)


def corrupt_arrays(arrays: Sequence[np.ndarray], positions: np.ndarray | Sequence[int]) -> list[np.ndarray]:
    """Copies of `arrays` with the given bits flipped, treating their raw bytes (C order,
    native byte order) concatenated in sequence as one payload. Floats may become inf/NaN."""
    copies = [np.array(a, copy=True, order="C") for a in arrays]
    for c in copies:
        if c.dtype.hasobject:
            raise ValueError("corrupt_arrays: object arrays have no raw payload")
    pos = np.sort(np.asarray(positions, dtype=np.int64).ravel())
    total = 8 * sum(c.nbytes for c in copies)
    if pos.size and (pos[0] < 0 or pos[-1] >= total):
        raise ValueError(f"corrupt_arrays: positions must lie in [0, {total})")
    offset = 0
    for c in copies:
        lo, hi = np.searchsorted(pos, (offset, offset + 8 * c.nbytes))
        if hi > lo:
            flip_bits(c.reshape(-1).view(np.uint8), pos[lo:hi] - offset)
        offset += 8 * c.nbytes
    return copies

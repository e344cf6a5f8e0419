"""Per-device link quality: radio physics as pure functions, and one device's links drawn from
a generator the caller seeds per device. Nothing is drawn for a device until it is asked for.

Physics (all vectorised over numpy arrays; a scalar in gives a float out):
  path_loss_db  log-distance path loss  PL(d) = PL(d0) + 10 n log10(d / d0),  d >= d0
  snr_db        SNR = P_tx - PL(d) - N  (dB / dBm)
  ber_from_snr  uncoded bit error rate over AWGN with Gray coding, clipped to [0, 0.5]

Defaults of LinkSpread are a 2.4 GHz IoT radio: path-loss exponent 3 (indoor), 40 dB at 1 m
(free space at 2.4 GHz: 20 log10(4 pi / 0.125 m) = 40.0 dB), 0 dBm transmit power, -95 dBm noise
(~1 MHz bandwidth plus receiver noise figure), QPSK, devices within 100 m. Then
SNR(d) = 55 - 30 log10(d) dB and, taking SNR as Es/N0 (Eb/N0 = SNR / 2 for QPSK):

    d = 10 m:  SNR 25.0 dB, Eb/N0 22.0 dB, BER ~ 5e-71 (error-free)
    d = 50 m:  SNR  4.0 dB, Eb/N0  1.0 dB, BER ~ 0.056
    d = 100 m: SNR -5.0 dB, Eb/N0 -8.0 dB, BER ~ 0.29

BER = 1e-5 (Eb/N0 9.6 dB) is reached at ~26 m, so with uniform placement over the 100 m disk only
~7% of devices get a link on which 1 KiB packets mostly arrive; widen that with a smaller
`radius_m`, more `tx_power_dbm` or less `noise_dbm`.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, replace

import numpy as np

from .errors import GilbertElliott, IndependentBits
from .link import Link

MODULATIONS: tuple[str, ...] = ("bpsk", "qpsk", "16qam", "64qam", "fsk")
KINDS: tuple[str, ...] = ("same", "spread", "distance")

_BITS_PER_SYMBOL = {"bpsk": 1, "qpsk": 2, "16qam": 4, "64qam": 6, "fsk": 1}
_erfc = np.vectorize(math.erfc, otypes=[float])


def _out(x: np.ndarray) -> np.ndarray | float:
    return float(x) if x.ndim == 0 else x


def _finite(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def q_function(x: np.ndarray | float) -> np.ndarray | float:
    """Gaussian tail Q(x) = P(N(0, 1) > x) = erfc(x / sqrt 2) / 2."""
    return _out(0.5 * _erfc(np.asarray(x, dtype=float) / math.sqrt(2.0)))


def path_loss_db(
    distance_m: np.ndarray | float, *, exponent: float, ref_loss_db: float, ref_distance_m: float = 1.0
) -> np.ndarray | float:
    """Log-distance path loss PL(d) = ref_loss_db + 10 * exponent * log10(d / ref_distance_m),
    with d clipped below at ref_distance_m (a receiver closer than d0 sees PL(d0))."""
    if not _finite(ref_distance_m) or ref_distance_m <= 0:
        raise ValueError(f"ref_distance_m={ref_distance_m!r}: must be finite and > 0")
    d = np.maximum(np.asarray(distance_m, dtype=float), ref_distance_m)
    return _out(ref_loss_db + 10.0 * exponent * np.log10(d / ref_distance_m))


def snr_db(
    distance_m: np.ndarray | float, *, tx_power_dbm: float, noise_dbm: float, exponent: float, ref_loss_db: float
) -> np.ndarray | float:
    """SNR (dB) = tx_power_dbm - path_loss_db(d) - noise_dbm, path loss referenced to 1 m."""
    pl = path_loss_db(distance_m, exponent=exponent, ref_loss_db=ref_loss_db)
    return _out(tx_power_dbm - np.asarray(pl) - noise_dbm)


def ber_from_snr(
    snr_db: np.ndarray | float,
    modulation: str,
    bandwidth_hz: float | None = None,
    bit_rate_bps: float | None = None,
) -> np.ndarray | float:
    """Uncoded bit error rate over AWGN, Gray coding, clipped to [0, 0.5].

    SNR (linear, S = 10^(snr_db / 10)) is turned into Eb/N0 as follows: with both
    `bandwidth_hz` B and `bit_rate_bps` R given, Eb/N0 = S * B / R; with neither, the SNR is
    taken as Es/N0 and Eb/N0 = S / log2(M) (M symbols; 1 bit for bpsk and fsk). Then:

      bpsk, qpsk  Pb = Q(sqrt(2 Eb/N0))                     (QPSK = two BPSK rails)
      16qam/64qam Pb ~ (4 / log2 M)(1 - 1/sqrt M) Q(sqrt(3 log2(M) Eb/N0 / (M - 1)))
                  (square M-QAM, nearest-neighbour errors; 16-QAM: (3/4) Q(sqrt(4/5 Eb/N0)))
      fsk         Pb = exp(-Eb/N0 / 2) / 2                  (non-coherent binary FSK)

    where Q(x) = erfc(x / sqrt 2) / 2.
    """
    if modulation not in MODULATIONS:
        raise ValueError(f"modulation={modulation!r}: allowed: {', '.join(MODULATIONS)}")
    if (bandwidth_hz is None) != (bit_rate_bps is None):
        raise ValueError("ber_from_snr: give both bandwidth_hz and bit_rate_bps, or neither")
    k = _BITS_PER_SYMBOL[modulation]
    s = np.power(10.0, np.asarray(snr_db, dtype=float) / 10.0)
    if bandwidth_hz is not None:
        for name, value in (("bandwidth_hz", bandwidth_hz), ("bit_rate_bps", bit_rate_bps)):
            if not _finite(value) or value <= 0:
                raise ValueError(f"{name}={value!r}: must be finite and > 0")
        ebn0 = s * (bandwidth_hz / bit_rate_bps)
    else:
        ebn0 = s / k
    if modulation in ("bpsk", "qpsk"):
        pb = np.asarray(q_function(np.sqrt(2.0 * ebn0)))
    elif modulation == "fsk":
        pb = 0.5 * np.exp(-ebn0 / 2.0)
    else:
        m = 2**k
        pb = (4.0 / k) * (1.0 - 1.0 / math.sqrt(m)) * np.asarray(q_function(np.sqrt(3.0 * k * ebn0 / (m - 1))))
    return _out(np.clip(pb, 0.0, 0.5))


@dataclass(frozen=True)
class LinkSpread:
    """How devices' links differ from the channel's mean `Link`.

    kind "same": every device gets the channel's link (as today; uplink bandwidth times
      `up_scale`). Draws nothing.
    kind "spread": per device and direction, bandwidth x Uniform[1 - spread, 1 + spread) and
      BER x Uniform[1 - spread, 1 + spread) (clipped to [0, 0.5]); four independent factors.
    kind "distance": the device sits uniformly over a disk of radius `radius_m` around its
      access point (d = radius_m * sqrt(U), at least 1 m); SNR from the path-loss model
      (`exponent`, `ref_loss_db` at 1 m, `tx_power_dbm`, `noise_dbm`), taken as Es/N0; BER from
      `ber_from_snr(snr, modulation)`, the same both ways. The channel's mean BER is NOT used;
      bandwidth is the channel's (the rate is fixed by the radio's PHY).
    In every kind uplink bandwidth = downlink bandwidth x `up_scale`.
    """

    kind: str = "same"
    spread: float = 0.5
    radius_m: float = 100.0
    exponent: float = 3.0
    ref_loss_db: float = 40.0
    tx_power_dbm: float = 0.0
    noise_dbm: float = -95.0
    modulation: str = "qpsk"
    up_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"channel.links={self.kind!r}: allowed: {', '.join(KINDS)}")
        if not _finite(self.spread) or not 0 <= self.spread < 1:
            raise ValueError(f"channel.spread={self.spread!r}: allowed range is [0, 1)")
        if not _finite(self.radius_m) or self.radius_m < 1:
            raise ValueError(f"channel.radius_m={self.radius_m!r}: must be finite and >= 1")
        if not _finite(self.exponent) or self.exponent <= 0:
            raise ValueError(f"channel.exponent={self.exponent!r}: must be finite and > 0")
        for name in ("ref_loss_db", "tx_power_dbm", "noise_dbm"):
            value = getattr(self, name)
            if not _finite(value):
                raise ValueError(f"channel.{name}={value!r}: must be a finite number")
        if self.modulation not in MODULATIONS:
            raise ValueError(f"channel.modulation={self.modulation!r}: allowed: {', '.join(MODULATIONS)}")
        if not _finite(self.up_scale) or self.up_scale <= 0:
            raise ValueError(f"channel.up_scale={self.up_scale!r}: must be finite and > 0")


@dataclass(frozen=True)
class DeviceLink:
    """One device's links: `up` (device to access point) and `down`. `distance_m` and `snr_db`
    are NaN unless the spread kind is "distance"."""

    up: Link
    down: Link
    distance_m: float = math.nan
    snr_db: float = math.nan


def _with_ber(errors: IndependentBits | GilbertElliott, ber: float) -> IndependentBits | GilbertElliott:
    """`errors`' model, same class, with mean BER `ber`. A Gilbert-Elliott chain is rebuilt by
    `from_mean_ber` with burst_bits = 1 / p_bad_to_good and bad_ber = the bad state's BER, which
    it raises to `ber` when lower, so the mean is always met (a hand-built chain's good-state BER
    is not kept). A chain that never leaves the bad state stays memoryless, at `ber`."""
    ber = min(max(float(ber), 0.0), 0.5)
    if isinstance(errors, IndependentBits):
        return IndependentBits(ber)
    if errors.p_bad_to_good == 0:
        return GilbertElliott(1.0, 0.0, ber, ber)
    bad_ber = max(errors.ber_bad, errors.ber_good) or 0.5
    return GilbertElliott.from_mean_ber(ber, burst_bits=1.0 / errors.p_bad_to_good, bad_ber=bad_ber)


def device_link(base: Link, spread: LinkSpread, rng: np.random.Generator) -> DeviceLink:
    """Draw one device's links from `rng` (seeded per device by the caller).

    "same" draws nothing and returns `base` itself both ways (a copy with scaled bandwidth as
    the uplink when up_scale != 1). "spread" draws rng.random(4): down bandwidth, up bandwidth,
    down BER, up BER factors. "distance" draws rng.random() once: d = radius_m * sqrt(U).
    """
    if spread.kind == "same":
        up = base if spread.up_scale == 1.0 else replace(base, bandwidth_bps=base.bandwidth_bps * spread.up_scale)
        return DeviceLink(up=up, down=base)
    bw = base.bandwidth_bps
    if spread.kind == "spread":
        f = 1.0 - spread.spread + 2.0 * spread.spread * rng.random(4)
        ber = base.errors.mean_ber
        down = replace(base, bandwidth_bps=bw * float(f[0]), errors=_with_ber(base.errors, ber * float(f[2])))
        up = replace(
            base, bandwidth_bps=bw * spread.up_scale * float(f[1]), errors=_with_ber(base.errors, ber * float(f[3]))
        )
        return DeviceLink(up=up, down=down)
    d = max(spread.radius_m * math.sqrt(float(rng.random())), 1.0)
    snr = float(
        snr_db(
            d,
            tx_power_dbm=spread.tx_power_dbm,
            noise_dbm=spread.noise_dbm,
            exponent=spread.exponent,
            ref_loss_db=spread.ref_loss_db,
        )
    )
    errors = _with_ber(base.errors, float(ber_from_snr(snr, spread.modulation)))
    down = replace(base, errors=errors)
    up = replace(base, bandwidth_bps=bw * spread.up_scale, errors=errors)
    return DeviceLink(up=up, down=down, distance_m=d, snr_db=snr)

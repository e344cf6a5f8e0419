"""When each device is online: always, an alternating renewal process of its own, or a trace.

The renewal process alternates online and offline periods, exponentially distributed with
means `online_s` and `offline_s` (per device kind, or one for the fleet); a device starts in
the stationary state (online with probability online_s / (online_s + offline_s)). Its k-th
draw is a pure function of (seed, device, k), a counter-based generator (SplitMix64 of the
three), so a device's history never depends on when, or whether, another device was asked;
the state arrays are allocated on first use and advanced lazily, by vectorised steps, only to
the moment asked. A million devices cost 13 bytes each and nothing per round until sampled.
"""

from __future__ import annotations

import numpy as np

__all__ = ["AlwaysOnline", "Renewal", "TraceAvailability"]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def _splitmix(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = x + _GOLDEN
        x = (x ^ (x >> np.uint64(30))) * _MIX1
        x = (x ^ (x >> np.uint64(27))) * _MIX2
        return x ^ (x >> np.uint64(31))


def uniforms(key: int, device: np.ndarray, k: np.ndarray) -> np.ndarray:
    """U(0, 1) draws, one per (device, k), for stream `key`: never 0 or 1."""
    with np.errstate(over="ignore"):
        x = _splitmix(np.uint64(key & 0xFFFFFFFFFFFFFFFF) ^ _splitmix(device.astype(np.uint64)))
        x = _splitmix(x ^ (k.astype(np.uint64) * _GOLDEN))
    return ((x >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53


class AlwaysOnline:
    """Every device, all the time."""

    def online(self, device: int, t: float) -> bool:
        return True

    def next_change(self, device: int, t: float) -> float:
        return float("inf")

    def online_mask(self, t: float) -> np.ndarray | None:
        return None  # all


class Renewal:
    """Alternating exponential online/offline periods per device (see the module docstring);
    `online_s`, `offline_s`: per-device means (arrays over the fleet)."""

    def __init__(self, key: int, online_s: np.ndarray, offline_s: np.ndarray):
        self.key, self.mean_on, self.mean_off = key, online_s, offline_s
        self._online: np.ndarray | None = None
        self._until: np.ndarray | None = None
        self._k: np.ndarray | None = None

    def _start(self) -> None:
        n = len(self.mean_on)
        dev = np.arange(n, dtype=np.uint64)
        p_on = self.mean_on / (self.mean_on + self.mean_off)
        self._online = uniforms(self.key, dev, np.zeros(n, np.uint64)) < p_on
        self._k = np.ones(n, dtype=np.uint32)
        mean = np.where(self._online, self.mean_on, self.mean_off)
        self._until = -mean * np.log(uniforms(self.key, dev, self._k))

    def _advance(self, idx: np.ndarray, t: float) -> None:
        """Step devices `idx` until their current period holds `t`."""
        idx = idx[self._until[idx] <= t]
        while idx.size:
            self._online[idx] = ~self._online[idx]
            self._k[idx] += 1
            mean = np.where(self._online[idx], self.mean_on[idx], self.mean_off[idx])
            self._until[idx] += -mean * np.log(uniforms(self.key, idx.astype(np.uint64), self._k[idx]))
            idx = idx[self._until[idx] <= t]

    def online(self, device: int, t: float) -> bool:
        if self._online is None:
            self._start()
        self._advance(np.array([device]), t)
        return bool(self._online[device])

    def next_change(self, device: int, t: float) -> float:
        if self._online is None:
            self._start()
        self._advance(np.array([device]), t)
        return float(self._until[device])

    def online_mask(self, t: float) -> np.ndarray:
        if self._online is None:
            self._start()
        self._advance(np.flatnonzero(self._until <= t), t)
        return self._online


class TraceAvailability:
    """Online intervals from a trace file (`devices.traces.AvailabilityTrace`); devices the trace
    does not name are always online."""

    def __init__(self, trace, num_devices: int):
        self.trace, self.n = trace, num_devices

    def online(self, device: int, t: float) -> bool:
        return bool(self.trace.online(device, t))

    def next_change(self, device: int, t: float) -> float:
        return float(self.trace.next_change(device, t))

    def online_mask(self, t: float) -> np.ndarray:
        return self.trace.online_mask(t, self.n)

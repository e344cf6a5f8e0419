"""A device model: memory, compute rate and power draw per activity state (pure data)."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields

STATES: tuple[str, ...] = ("compute", "transmit", "receive", "idle")


def _check_positive(name: str, value: object, *, integer: bool = False) -> None:
    ok_type = isinstance(value, numbers.Integral if integer else numbers.Real)
    if isinstance(value, bool) or not ok_type:
        kind = "an integer" if integer else "a number"
        raise ValueError(f"DeviceProfile.{name}={value!r}: must be {kind} > 0")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"DeviceProfile.{name}={value!r}: must be finite and > 0")


@dataclass(frozen=True)
class DeviceProfile:
    """One kind of device. Powers are whole-device draw (W) while in each state.

    Its network interface: `message_s`, the seconds its network stack spends on one message
    sent or received (the software and TCP cost, whatever the link), and `nic_bps`, its port's
    rate (a link is no faster than the device's end of it). 0 and inf: not modelled. NoNN's
    systems charge them (`sim.nonn.system`: its wired deployments are what they were fitted to)."""

    name: str
    memory_bytes: int
    flops_per_s: float
    compute_w: float
    transmit_w: float
    receive_w: float
    idle_w: float
    source: str
    message_s: float = 0.0
    nic_bps: float = math.inf

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"DeviceProfile.name={self.name!r}: must be a non-empty string")
        _check_positive("memory_bytes", self.memory_bytes, integer=True)
        for f in fields(self):
            if f.name not in ("name", "memory_bytes", "source", "message_s", "nic_bps"):
                _check_positive(f.name, getattr(self, f.name))
        if not isinstance(self.source, str):
            raise ValueError(f"DeviceProfile.source={self.source!r}: must be a string")
        m, r = self.message_s, self.nic_bps
        if isinstance(m, bool) or not isinstance(m, numbers.Real) or not (math.isfinite(m) and m >= 0):
            raise ValueError(f"DeviceProfile.message_s={m!r}: must be finite and >= 0")
        if isinstance(r, bool) or not isinstance(r, numbers.Real) or not r > 0:
            raise ValueError(f"DeviceProfile.nic_bps={r!r}: must be > 0 (inf: not modelled)")

    def compute_time_s(self, flops: float) -> float:
        """Seconds to execute `flops` floating-point operations at the sustained rate."""
        if not flops >= 0:
            raise ValueError(f"flops={flops!r}: must be >= 0")
        return float(flops) / self.flops_per_s

    def power_w(self, state: str) -> float:
        """Power draw in `state` (one of compute, transmit, receive, idle)."""
        if state not in STATES:
            raise ValueError(f"unknown device state {state!r}; allowed: {', '.join(STATES)}")
        return float(getattr(self, f"{state}_w"))

    def energy_j(self, state: str, seconds: float) -> float:
        """Energy spent staying `seconds` in `state`."""
        if not seconds >= 0:
            raise ValueError(f"seconds={seconds!r}: must be >= 0")
        return self.power_w(state) * float(seconds)

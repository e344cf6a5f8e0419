"""The energy ledger of a fleet: joules and busy seconds per device and state, and batteries."""

from __future__ import annotations

import numpy as np

from devices.profile import STATES

__all__ = ["STATES", "EnergyLedger"]


class EnergyLedger:
    """Joules and busy seconds per device and state, in flat arrays (one row a device), for
    fleets of any size: `power_w` is (devices, 4) in `STATES` order."""

    def __init__(self, power_w: np.ndarray):
        self.power_w = power_w
        self.energy_j = np.zeros_like(power_w, dtype=np.float64)
        self.busy_s = np.zeros(len(power_w), dtype=np.float64)
        self.depleted: set[int] = set()  # ran out mid-activity (kept: rounding must not revive them)

    @classmethod
    def of(cls, fleet) -> EnergyLedger:
        """The ledger of `fleet` (a `devices.Fleet`), nothing spent yet."""
        return cls(np.stack([fleet.power_w(state) for state in STATES], axis=1))

    def spend(self, device: int, state: str, seconds: float) -> float:
        col = STATES.index(state)
        joules = seconds * float(self.power_w[device, col])
        self.energy_j[device, col] += joules
        if state != "idle":
            self.busy_s[device] += seconds
        return joules

    def close(self, total_s: float) -> None:
        """Book every device's time not spent busy as idle, up to `total_s`."""
        idle_s = np.maximum(total_s - self.busy_s, 0.0)
        self.energy_j[:, STATES.index("idle")] = idle_s * self.power_w[:, STATES.index("idle")]

    # --- batteries --------------------------------------------------------------------
    def with_batteries(self, battery_j: np.ndarray | None) -> EnergyLedger:
        """Give each device a battery of `battery_j` joules (inf: mains powered); None: none."""
        self.battery_j = battery_j
        return self

    battery_j: np.ndarray | None = None

    def spent_j(self, device: int, now_s: float) -> float:
        """Joules device `device` has drawn by `now_s`: its busy states as booked, and idle the
        rest of the time (a device is on, if not reachable, all the run)."""
        busy_j = float(self.energy_j[device, :3].sum())
        return busy_j + max(now_s - float(self.busy_s[device]), 0.0) * float(self.power_w[device, 3])

    def depletes_at(self, device: int, now_s: float, power_w: float) -> float:
        """When device `device` runs out if it draws `power_w` from `now_s` on (inf: no battery)."""
        if self.battery_j is None or not np.isfinite(self.battery_j[device]):
            return float("inf")
        left = float(self.battery_j[device]) - self.spent_j(device, now_s)
        return now_s + max(left, 0.0) / power_w

    def alive(self, device: int, now_s: float) -> bool:
        if self.battery_j is None:
            return True
        return device not in self.depleted and self.depletes_at(device, now_s, 1.0) > now_s

    def alive_mask(self, now_s: float) -> np.ndarray | None:
        """Devices with charge left at `now_s` (None: no batteries, all alive)."""
        if self.battery_j is None:
            return None
        spent = self.energy_j[:, :3].sum(axis=1) + np.maximum(now_s - self.busy_s, 0.0) * self.power_w[:, 3]
        alive = spent < self.battery_j
        alive[list(self.depleted)] = False
        return alive

    def devices_alive(self, now_s: float) -> int:
        """Devices with charge left at `now_s` (all, without batteries)."""
        alive = self.alive_mask(now_s)
        return len(self.busy_s) if alive is None else int(alive.sum())

"""Stateful devices on one clock: a device is offline, idle, receiving, computing or
transmitting; it is busy while it works, may go offline or run out of battery mid-way (the
activity then fails, named), and leaves its states in a timeline.

The activities are SimPy processes for `yield from`: each returns None when done, or why it
failed (`offline`, `battery_depleted`). What a device does is decided beforehand by the real
computation (its FLOPs, its payloads' transfer outcomes); here only *when* it happens and what
it costs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import simpy

from channels import Link, TransferOutcome
from devices import DeviceProfile
from sim.net.energy import STATES, EnergyLedger
from sim.net.medium import Medium

__all__ = ["Network", "Server", "Timeline", "TIMELINE_COLUMNS"]

TIMELINE_COLUMNS = ["device", "state", "start_s", "end_s"]
FAILURES = ("offline", "battery_depleted")


class Timeline:
    """(device, state, start_s, end_s) rows, as the devices live them (timeline.csv)."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self._last: dict[str, dict] = {}  # each device's latest row

    def add(self, device: str, state: str, start_s: float, end_s: float) -> None:
        """A device's state over [start_s, end_s); one that carries on the device's latest row
        (a transfer's airtime, then its latency) extends it."""
        if end_s <= start_s:
            return
        last = self._last.get(device)
        if last is not None and last["state"] == state and last["end_s"] == start_s:
            last["end_s"] = end_s
            return
        row = {"device": device, "state": state, "start_s": start_s, "end_s": end_s}
        self.rows.append(row)
        self._last[device] = row

    def sorted(self) -> list[dict]:
        return sorted(self.rows, key=lambda r: (r["start_s"], r["device"], r["end_s"], r["state"]))


@dataclass
class Network:
    """The fleet's devices on the clock `env`: energy in `ledger`, transfers over `medium`,
    `availability` (`sim.net.availability`), each device's links from `links(device)` ->
    (up, down), and `label(device)` naming it in the timeline."""

    env: simpy.Environment
    ledger: EnergyLedger
    medium: Medium
    availability: object
    links: Callable[[int], tuple[Link, Link]]
    label: Callable[[int], str] = str
    timeline: Timeline | None = None

    def __post_init__(self) -> None:
        self.active: dict[int, int] = {}
        self._listening: dict[int, tuple[int, float]] = {}  # device -> (messages heard now, since)

    # --- state ------------------------------------------------------------------------
    def busy(self, device: int) -> bool:
        return self.active.get(device, 0) > 0

    def unavailable(self, device: int) -> str | None:
        """Why `device` cannot start work now (busy, offline, battery_depleted), or None."""
        now = self.env.now
        if not self.ledger.alive(device, now):
            return "battery_depleted"
        if not self.availability.online(device, now):
            return "offline"
        return "busy" if self.busy(device) else None

    def offered(self) -> np.ndarray:
        """The devices online, charged and idle now (ascending)."""
        now, n = self.env.now, len(self.ledger.busy_s)
        mask = self.availability.online_mask(now)
        alive = self.ledger.alive_mask(now)
        if mask is None and alive is None and not self.active:
            return np.arange(n)
        ok = np.ones(n, dtype=bool) if mask is None else mask.copy()
        if alive is not None:
            ok &= alive
        for d, count in self.active.items():
            if count:
                ok[d] = False
        return np.flatnonzero(ok)

    def begin(self, device: int) -> None:
        self.active[device] = self.active.get(device, 0) + 1

    def end(self, device: int) -> None:
        left = self.active[device] - 1
        if left:
            self.active[device] = left
        else:
            del self.active[device]

    # --- activities -------------------------------------------------------------------
    def compute(self, device: int, seconds: float) -> Iterator:
        """Process: `device` computes for `seconds`; None, or why it stopped."""
        return (yield from self._hold(device, "compute", self.env.timeout(seconds)))

    def transfer(self, device: int, direction: str, outcome: TransferOutcome, *, latency: bool = True) -> Iterator:
        """Process: `device` sends (up) or receives (down) a message whose outcome is drawn: its
        bits over the medium at its link's rate, then (`latency`) the link's latency, the sender
        waiting for the last acknowledgement; None, or why it failed."""
        link = self.links(device)[0 if direction == "up" else 1]
        done, cell = self.medium.send(device, direction, outcome.bits_sent, link.bandwidth_bps)
        state = "transmit" if direction == "up" else "receive"
        why = yield from self._hold(device, state, done, cell)
        if why is None and latency and link.latency_s > 0:
            why = yield from self._hold(device, state, self.env.timeout(link.latency_s))
        return why

    def message(self, src: int, dst: int, outcome: TransferOutcome, *, latency: bool = True) -> Iterator:
        """Process: device `src` sends to device `dst` (over `src`'s uplink: a transmission takes
        the air once), `dst` receiving meanwhile; None, or why it failed (either one)."""
        link = self.links(src)[0]
        done, cell = self.medium.send(src, "up", outcome.bits_sent, link.bandwidth_bps)
        if latency and link.latency_s > 0:
            done = self._then(done, link.latency_s)
        hearing = self.env.process(self._listen(dst, done))
        why = yield from self._hold(src, "transmit", done, cell)
        if why is not None and not done.triggered:
            done.succeed()  # the sender is gone: the receiver stops listening now
        return why or (yield hearing)

    def _then(self, event: simpy.Event, delay_s: float) -> simpy.Event:
        """An event `delay_s` after `event`."""
        later = self.env.event()

        def fire(_ev):
            self.env.timeout(delay_s).callbacks.append(lambda _e: later.succeed() if not later.triggered else None)

        event.callbacks.append(fire)
        return later

    def _listen(self, device: int, done: simpy.Event) -> Iterator:
        """Process: `device` receives until `done`; messages heard at once overlap (it is in one
        receive state, charged once). Returns None, or why it missed the message."""
        start = self.env.now
        count, since = self._listening.get(device, (0, start))
        self._listening[device] = (count + 1, since)
        yield done
        count, since = self._listening.pop(device)
        if count > 1:
            self._listening[device] = (count - 1, since)
        else:
            self._book(device, "receive", since)
        if self.availability.next_change(device, start) <= self.env.now:
            return "offline"
        if not self.ledger.alive(device, self.env.now):
            self.ledger.depleted.add(device)
            return "battery_depleted"
        return None

    def _book(self, device: int, state: str, start: float) -> None:
        self.ledger.spend(device, state, self.env.now - start)
        if self.timeline is not None:
            self.timeline.add(self.label(device), state, start, self.env.now)

    def _hold(self, device: int, state: str, done: simpy.Event, cell=None) -> Iterator:
        env, start = self.env, self.env.now
        power = float(self.ledger.power_w[device, STATES.index(state)])
        off_at = self.availability.next_change(device, start)
        empty_at = self.ledger.depletes_at(device, start, power)
        why = None
        if min(off_at, empty_at) == float("inf"):
            yield done
        else:
            end = env.timeout(min(off_at, empty_at) - start)
            fired = yield done | end
            if done not in fired:
                why = "battery_depleted" if empty_at <= off_at else "offline"
                if why == "battery_depleted":
                    self.ledger.depleted.add(device)
                if cell is not None:
                    cell.cancel(done)
        self._book(device, state, start)
        if self.timeline is not None:
            if why == "offline":
                back = self.availability.next_change(device, env.now)
                self.timeline.add(self.label(device), "offline", env.now, back if back < float("inf") else env.now)
        return why


class Server:
    """The server as a device of `profile`: its computations take time and energy on the clock."""

    def __init__(self, env: simpy.Environment, profile: DeviceProfile | None, timeline: Timeline | None = None):
        self.env, self.profile, self.timeline = env, profile, timeline
        self.energy_j = 0.0
        self.busy_s = 0.0

    def compute(self, flops: float) -> Iterator:
        """Process: the server runs `flops` (at once when it has no profile: zero-time server)."""
        if self.profile is None or flops <= 0:
            return
        seconds = self.profile.compute_time_s(flops)
        start = self.env.now
        yield self.env.timeout(seconds)
        self.energy_j += self.profile.energy_j("compute", seconds)
        self.busy_s += seconds
        if self.timeline is not None:
            self.timeline.add("server", "compute", start, self.env.now)

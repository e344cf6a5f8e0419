"""The medium transfers cross: a dedicated link per device, or cells whose capacity the
transfers in flight share.

`shared`: each cell (an access point) has an uplink and a downlink capacity, shared by
processor sharing: at every moment the transfers in flight on a direction of a cell split its
capacity max-min fairly (each gets an equal share, but never more than its own link's rate; what
a slow link leaves is split among the others), re-evaluated at each arrival and departure. So
`n` equal transfers started together all finish after `n` times one transfer's airtime.
Processor sharing is the fluid limit of a fair MAC (802.11's DCF, a round-robin TDMA scheduler)
when packets are small against the transfer, which they are here (256 B packets, kB-MB
payloads); TDMA slots would add a slot-rounding error and a schedule to choose, for no insight.

`dedicated`: a transfer never waits for another; it lasts its bits over its link's rate.

Bit errors, retransmissions and the bits a transfer puts on the air are drawn beforehand
(`channels.transfer`), per link and per packet; the medium only decides *when* those bits
are through.
"""

from __future__ import annotations

import math

import simpy

__all__ = ["Cell", "Medium", "fair_rates"]


def fair_rates(capacity_bps: float, caps_bps: list[float]) -> list[float]:
    """Max-min fair split of `capacity_bps` among flows each limited to its own `caps_bps`."""
    rates = [0.0] * len(caps_bps)
    left, n = capacity_bps, len(caps_bps)
    for k, i in enumerate(sorted(range(n), key=lambda j: caps_bps[j])):
        share = left / (n - k)
        rates[i] = min(caps_bps[i], share)
        left -= rates[i]
    return rates


class _Flow:
    __slots__ = ("bits", "cap_bps", "done", "rate")

    def __init__(self, bits: float, cap_bps: float, done: simpy.Event):
        self.bits, self.cap_bps, self.done, self.rate = bits, cap_bps, done, 0.0


class Cell:
    """One direction of one access point: processor sharing of `capacity_bps`."""

    def __init__(self, env: simpy.Environment, capacity_bps: float):
        self.env, self.capacity_bps = env, capacity_bps
        self.flows: list[_Flow] = []
        self._last = env.now
        self._generation = 0

    def send(self, bits: float, cap_bps: float) -> simpy.Event:
        """An event that fires when `bits` are through, at up to `cap_bps`."""
        done = self.env.event()
        if bits <= 0:
            done.succeed()
            return done
        self._drain()
        self.flows.append(_Flow(float(bits), cap_bps, done))
        self._reschedule()
        return done

    def cancel(self, done: simpy.Event) -> float:
        """Stop the flow `done` belongs to (its sender went away); returns the bits left."""
        self._drain()
        for f in self.flows:
            if f.done is done:
                self.flows.remove(f)
                self._reschedule()
                return f.bits
        return 0.0

    def _drain(self) -> None:
        dt = self.env.now - self._last
        if dt > 0:
            for f in self.flows:
                f.bits -= f.rate * dt
        self._last = self.env.now

    def _reschedule(self) -> None:
        self._generation += 1
        if not self.flows:
            return
        for f, r in zip(self.flows, fair_rates(self.capacity_bps, [f.cap_bps for f in self.flows])):
            f.rate = r
        wait = min(f.bits / f.rate for f in self.flows)
        gen = self._generation
        self.env.timeout(max(wait, 0.0)).callbacks.append(lambda _ev: self._tick(gen))

    def _tick(self, generation: int) -> None:
        if generation != self._generation:
            return  # a later arrival or departure rescheduled
        self._drain()
        # flows started together with equal bits end together: a relative tolerance keeps
        # float round-off from splitting them
        finished = [f for f in self.flows if f.bits <= 1e-9 * max(f.cap_bps, 1.0)]
        for f in finished:
            self.flows.remove(f)
            f.done.succeed()
        self._reschedule()


class Medium:
    """`dedicated` links, or `cells` shared access points (device `d` attaches to cell
    `d % cells`), each with an uplink and a downlink capacity (`full` duplex), or one capacity
    both directions share (`half` duplex, as Wi-Fi and 802.15.4 radios: the uplink's)."""

    def __init__(
        self,
        env: simpy.Environment,
        kind: str,
        *,
        cells: int = 1,
        up_bps: float = 0.0,
        down_bps: float = 0.0,
        duplex: str = "full",
    ):
        self.env, self.kind = env, kind
        if kind == "shared":
            up = [Cell(env, up_bps) for _ in range(cells)]
            down = up if duplex == "half" else [Cell(env, down_bps) for _ in range(cells)]
            self._cells = {"up": up, "down": down}

    def cell(self, device: int, direction: str) -> Cell | None:
        if self.kind != "shared":
            return None
        cells = self._cells[direction]
        return cells[device % len(cells)]

    def send(self, device: int, direction: str, bits: float, rate_bps: float) -> tuple[simpy.Event, Cell | None]:
        """An event that fires when `bits` from (up) or to (down) `device` are through."""
        cell = self.cell(device, direction)
        if cell is None:
            return self.env.timeout(bits / rate_bps if bits > 0 else 0.0), None
        return cell.send(bits, rate_bps if math.isfinite(rate_bps) else cell.capacity_bps), cell

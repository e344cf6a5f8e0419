"""SimPy processes of the federated workload on the run's one clock: each sampled device's
round (download, compute, upload over the medium, as a stateful device of `sim.net.Network`),
and the server waiting for the replies until its deadline. The real computation has already
happened (its FLOPs and payload sizes are in each `ClientPlan`); these processes only decide
*when* things happen, what they cost in energy, and which device fails how.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import simpy

from channels import TransferOutcome
from sim.net import Network

__all__ = ["ClientPlan", "Round", "client"]


@dataclass
class ClientPlan:
    """What one sampled device does in a round, as decided by the real computation."""

    node_id: int
    device: int
    unavailable: str | None = None  # busy, offline or battery_depleted when the message came
    down: TransferOutcome | None = None
    down_flips: int = 0  # bits the raw channel flipped in the delivered arrays
    fits: bool = True  # the memory check passed
    error: bool = False  # the ClientApp raised, or replied with an error
    compute_s: float = 0.0
    up: TransferOutcome | None = None


class Round:
    """One phase of a round on the clock: the server waits for every reply, or its deadline."""

    def __init__(self, env: simpy.Environment, rows: list, deadline_s: float | None):
        self.env, self.start_s, self.deadline_s, self.rows = env, env.now, deadline_s, rows
        self.arrivals = [env.event() for _ in rows]
        self.end_s: float | None = None
        self.done = env.process(self._server(deadline_s))

    def _server(self, deadline_s: float | None):
        wait = self.env.all_of(self.arrivals)
        yield wait if deadline_s is None else wait | self.env.timeout(deadline_s)
        self.end_s = self.env.now

    def play(self) -> float:
        """Run the clock until the server stops waiting (and the events of that same moment);
        devices still working go on in the next phase's run. Returns when it stopped."""
        env = self.env
        env.run(until=self.done)
        while env.peek() == env.now:
            env.step()
        for row, arrived in zip(self.rows, self.arrivals):
            if not arrived.triggered and not row.status:  # still working
                row.status = "straggler"  # for now: when it ends, its process says how
        return self.end_s

    def finish(self, i: int, replied: bool) -> None:
        """Client `i` is done: a reply (or an error report) reached the server, or, when it
        did not, the server stops counting on it only if it has no deadline to wait for."""
        if replied or self.deadline_s is None:
            self.arrivals[i].succeed()

    def late(self) -> bool:
        return self.end_s is not None and self.env.now > self.end_s


def client(net: Network, plan: ClientPlan, rnd: Round, i: int):
    """Process: device `plan.device`'s part of a round; fills its row (a `ClientRow`) as it goes."""
    d, row = plan.device, rnd.rows[i]
    if plan.unavailable:
        row.status = plan.unavailable  # it never answers
        rnd.finish(i, replied=False)
        return
    net.begin(d)
    spent0 = net.ledger.energy_j[d, :3].sum()
    try:
        replied = yield from _run(net, plan, row, rnd)
        rnd.finish(i, replied)
    finally:
        net.end(d)
        row.energy_j = float(net.ledger.energy_j[d, :3].sum() - spent0)


def _timed(net: Network, row, field: str, activity) -> Iterator:
    """Process: `activity` (a device's step), its duration written to `row.<field>`; returns why it failed."""
    start = net.env.now
    why = yield from activity
    setattr(row, field, net.env.now - start)
    return why


def _run(net: Network, plan: ClientPlan, row, rnd: Round):
    """Returns whether a reply reached the server."""
    d = plan.device
    why = yield from _timed(net, row, "download_s", net.transfer(d, "down", plan.down))
    if why or not plan.down.delivered:
        row.status = why or "lost_down"
        return False
    if plan.fits:
        why = yield from _timed(net, row, "compute_s", net.compute(d, plan.compute_s))
        if why:
            row.status = why
            return False
    why = yield from _timed(net, row, "upload_s", net.transfer(d, "up", plan.up))
    if why or not plan.up.delivered:
        row.status = why or "lost_up"
        return False
    if not plan.fits:
        row.status = "out_of_memory"  # it failed at once and said so
    elif plan.error:
        row.status = "error"
    else:
        row.arrival_s = net.env.now
        row.status = "straggler" if rnd.late() else "received"
    return True

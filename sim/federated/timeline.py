"""SimPy processes of one federated round: transfers over links, compute on devices, and
the server's deadline. The real computation has already happened (its FLOPs and payload
sizes are in each `ClientPlan`); these processes only decide *when* things happen and what
they cost in energy.
"""

from __future__ import annotations

from dataclasses import dataclass

import simpy

from channels import TransferOutcome
from sim.net import EnergyLedger, carry

__all__ = ["ClientPlan", "ClientTimeline", "run_round"]


@dataclass
class ClientPlan:
    """What one sampled device does in a round, as decided by the real computation."""

    node_id: int
    device: int
    dropped: bool = False
    down: TransferOutcome | None = None
    down_flips: int = 0  # bits the raw channel flipped in the delivered arrays
    fits: bool = True  # the memory check passed
    compute_s: float = 0.0
    up: TransferOutcome | None = None


@dataclass
class ClientTimeline:
    """When each phase of a client's round ended, and what it cost; `status` says how it ended."""

    node_id: int
    status: str = "received"
    down_s: float = 0.0
    compute_s: float = 0.0
    up_s: float = 0.0
    energy_j: float = 0.0
    arrival_s: float = float("nan")
    end_s: float = 0.0  # when the device stopped working on this round


def _client(
    env: simpy.Environment,
    plan: ClientPlan,
    tl: ClientTimeline,
    arrived: simpy.Event,
    ledger: EnergyLedger,
    trace: list,
):
    def log(event: str) -> None:
        trace.append((round(env.now, 9), plan.node_id, event))
        tl.end_s = env.now

    if plan.dropped:
        tl.status = "dropped"
        log("dropped")
        return
    yield from _over_link(env, plan, tl, ledger, log, "down")
    if tl.status == "lost_down":
        return
    if not plan.fits:
        # the device cannot hold the training state: it fails at once and says so
        tl.status = "out_of_memory"
        log("out_of_memory")
        yield from _over_link(env, plan, tl, ledger, log, "up")
        if tl.status == "out_of_memory":
            arrived.succeed()
        return
    log("compute")
    yield env.timeout(plan.compute_s)
    tl.compute_s = plan.compute_s
    tl.energy_j += ledger.spend(plan.device, "compute", plan.compute_s)
    yield from _over_link(env, plan, tl, ledger, log, "up")
    if tl.status == "received":
        tl.arrival_s = env.now
        log("arrived")
    if not tl.status.startswith("lost"):
        arrived.succeed()  # a reply, or an error report, reached the server


def _over_link(env: simpy.Environment, plan: ClientPlan, tl: ClientTimeline, ledger: EnergyLedger, log, direction: str):
    """The device receives ("down") or sends ("up") its message; a transfer that gives up
    ends the client's round as lost."""
    outcome, state = (plan.down, "receive") if direction == "down" else (plan.up, "transmit")
    log("download" if direction == "down" else "upload")
    yield from carry(env, outcome)
    setattr(tl, f"{direction}_s", outcome.time_s)
    tl.energy_j += ledger.spend(plan.device, state, outcome.time_s)
    if not outcome.delivered:
        tl.status = f"lost_{direction}"
        log(tl.status)


def _server(env: simpy.Environment, arrivals: list[simpy.Event], deadline_s: float, done: dict):
    """The server stops waiting at the first of: every reply in, or the deadline."""
    yield env.all_of(arrivals) | env.timeout(deadline_s)
    done["end_s"] = env.now


def run_round(
    start_s: float, plans: list[ClientPlan], deadline_s: float | None, ledger: EnergyLedger, trace: list
) -> tuple[float, list[ClientTimeline]]:
    """Play one round from `start_s`; returns when the server stopped waiting, and each
    client's timeline. Replies that arrive after the deadline are stragglers; devices finish
    their work all the same (and spend its energy)."""
    env = simpy.Environment(initial_time=start_s)
    timelines = [ClientTimeline(p.node_id) for p in plans]
    arrivals = [env.event() for _ in plans]
    for plan, tl, ev in zip(plans, timelines, arrivals):
        env.process(_client(env, plan, tl, ev, ledger, trace))
    done: dict = {}
    if deadline_s is None:
        # No deadline: the server waits until every sampled device has finished or failed.
        env.run()
        return max([start_s] + [tl.end_s for tl in timelines]), timelines
    env.process(_server(env, arrivals, deadline_s, done))
    env.run()
    end_s = done["end_s"]
    for tl in timelines:
        if tl.status == "received" and tl.arrival_s > end_s:
            tl.status = "straggler"
    return end_s, timelines

"""The link of a NAIR job on the SimPy clock: one IoT device's radio and the edge server's receiver.

Each test image is one episode: the head computes for its seconds, then the device's radio sends
the slices back to back (`sim.net.transmit`, the airtime only) until all are out or the last
latency budget has passed; every delivered slice reaches the receiver's mailbox one link latency
later (`sim.net.propagate`). At each budget the receiver takes what has arrived. Episodes follow
one another on the same radio. The real payloads are not here: only their sizes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import simpy

from channels import Link
from sim.net import propagate, radio, transmit

__all__ = ["SliceEvent", "airtime_s", "events_by_episode", "simulate_link", "transmit_s"]


@dataclass
class SliceEvent:
    """One slice sent during one episode (one inference)."""

    episode: int
    slice: int
    start_s: float  # relative to the episode's start (the sensor reading)
    end_s: float  # end of its airtime
    arrival_s: float  # when its last bit reached the receiver
    delivered: bool  # every packet got through (arq gives up after max_attempts)
    flips: np.ndarray  # payload bit positions flipped (raw mode)
    attempts: int


def _sender(
    env: simpy.Environment,
    interface: simpy.Resource,
    link: Link,
    sizes: Sequence[int],
    stop_s: float,
    rng: np.random.Generator,
    mailbox: simpy.Store,
    log: list,
    episode: int,
    t0: float,
):
    """The device's radio sends the slices back to back until they are all out or `stop_s` (the
    last budget) has passed; each delivered slice reaches the mailbox one link latency after its
    airtime."""
    with interface.request() as req:
        yield req
        for s, size in enumerate(sizes):
            if env.now >= stop_s:
                break
            start = env.now
            out = yield from transmit(env, link, int(size), rng, through_latency=False)
            ev = SliceEvent(
                episode,
                s,
                start - t0,
                env.now - t0,
                env.now - t0 + link.latency_s,
                out.delivered,
                out.flip_positions,
                out.attempts,
            )
            log.append(ev)
            if out.delivered:
                env.process(propagate(env, link.latency_s, mailbox, ev))


def _receiver(
    env: simpy.Environment, mailbox: simpy.Store, t0: float, budgets: Sequence[float], got: dict, episode: int
):
    """The edge server takes the slices as they arrive; at each budget (in increasing order) it
    records what it has so far (`got[(episode, b)]` = slice indices)."""
    arrived: list[int] = []
    for b, budget in sorted(enumerate(budgets), key=lambda t: t[1]):
        while True:
            left = t0 + budget - env.now
            if left < 0:
                break
            get = mailbox.get()
            res = yield get | env.timeout(left)
            if get not in res:
                get.cancel()
                break
            arrived.append(res[get].slice)
        got[(episode, b)] = list(arrived)


def _episode(
    env: simpy.Environment,
    interface: simpy.Resource,
    link: Link,
    head_s: float,
    sizes: Sequence[int],
    budgets: Sequence[float],
    rng: np.random.Generator,
    log: list,
    got: dict,
    episode: int,
):
    """One inference: the head computes, the radio sends, the receiver takes what has arrived
    by each budget."""
    t0 = env.now
    yield env.timeout(head_s)
    mailbox = simpy.Store(env)
    sender = env.process(_sender(env, interface, link, sizes, t0 + max(budgets), rng, mailbox, log, episode, t0))
    yield from _receiver(env, mailbox, t0, budgets, got, episode)
    yield sender


def simulate_link(
    link: Link,
    episodes: Sequence[tuple[float, Sequence[int], Sequence[float]]],
    rng_for: Callable[[int], np.random.Generator],
) -> tuple[list[SliceEvent], dict]:
    """Play `episodes` (head seconds, slice sizes in bytes, budgets) one after another on one
    device's radio, episode e drawing its link outcomes from `rng_for(e)`; returns every slice
    sent and, per (episode, budget index), the slices the receiver had by that budget."""
    env = simpy.Environment()
    interface = radio(env)
    log: list[SliceEvent] = []
    got: dict = {}

    def driver():
        for e, (head_s, sizes, budgets) in enumerate(episodes):
            yield env.process(_episode(env, interface, link, head_s, sizes, budgets, rng_for(e), log, got, e))

    env.process(driver())
    env.run()
    return log, got


def events_by_episode(log: Sequence[SliceEvent]) -> dict[int, dict[int, SliceEvent]]:
    """Episode -> slice -> its event, in sending order."""
    by_episode: dict[int, dict[int, SliceEvent]] = {}
    for ev in log:
        by_episode.setdefault(ev.episode, {})[ev.slice] = ev
    return by_episode


def transmit_s(events: Sequence[SliceEvent], budget_s: float) -> float:
    """Seconds the radio was on the air for `events` before `budget_s` (the radio's energy)."""
    return sum(max(0.0, min(e.end_s, budget_s) - e.start_s) for e in events)


def airtime_s(link: Link, size: int) -> float:
    """Error-free airtime of one message of `size` bytes (packets and headers)."""
    packets = -(-int(size) // link.packet_bytes)
    return (8 * size + 8 * link.header_bytes * packets) / link.bandwidth_bps

"""The link of a NAIR job on the SimPy clock: the IoT device and the edge server on one network.

One network (`sim.net.build.build_network`) per method, one clock for all its episodes: each test
image is one episode, and episodes follow one another (the device starts the next image when the
last budget of this one has passed and its radio is done). In an episode the device computes the
head (`Network.compute`), then sends the slices back to back over the medium
(`Network.transfer`, the airtime only) until all are out or the last latency budget has passed;
every delivered slice reaches the receiver's mailbox one link latency later
(`sim.net.propagate`). At each budget the server takes what has arrived and runs the tail on it
(`Server.compute`, beside the clock of the budgets: the paper counts the budget to the tail's
input). With `senders` > 1 devices, device d plays episodes d, d + senders, ... at the same time
as the others, and on `channel.medium=shared` their slices split the cell. The real payloads are
not here: only their sizes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import simpy

from channels import Link, transfer
from devices import DeviceProfile, fleet_of
from sim.config import Config
from sim.net import Network, Server, propagate
from sim.net.build import build_network

__all__ = [
    "TIMELINE_EPISODES",
    "LinkRun",
    "SliceEvent",
    "airtime_s",
    "events_by_episode",
    "nair_network",
    "simulate_link",
    "transmit_s",
]

TIMELINE_EPISODES = 10  # timeline.csv holds each device's first episodes (a run has thousands)


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


@dataclass
class LinkRun:
    """What `simulate_link` returns: every slice sent, the slices the server had by each
    (episode, budget index), and the devices' states over the first episodes (timeline.csv)."""

    log: list[SliceEvent]
    got: dict
    timeline: list[dict]


def nair_network(cfg: Config, device: DeviceProfile, server: DeviceProfile, senders: int = 1) -> tuple[Network, Server]:
    """One simulated system: `senders` IoT devices of `device` and the edge server, on the
    medium and links of `channel.*`, one clock."""
    label = (lambda _d: "device") if senders == 1 else (lambda d: f"device{d + 1}")
    return build_network(cfg, fleet_of([device] * senders), label=label, own_devices=server)


def _sender(net: Network, device: int, sizes: Sequence[int], stop_s: float, rng, mailbox, log: list, episode, t0):
    """The device sends the slices back to back until they are all out or `stop_s` (the last
    budget) has passed; each delivered slice reaches the mailbox one link latency after its
    airtime."""
    env, link = net.env, net.links(device)[0]
    for s, size in enumerate(sizes):
        if env.now >= stop_s:
            break
        start = env.now
        out = transfer(link, int(size), rng)
        yield from net.transfer(device, "up", out, latency=False)
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


def _receiver(env: simpy.Environment, server: Server, flops: int, mailbox, t0, budgets, got: dict, episode: int):
    """The edge server takes the slices as they arrive; at each budget (in increasing order) it
    records what it has so far (`got[(episode, b)]` = slice indices) and runs the tail on it."""
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
        env.process(server.compute(flops))


def _episode(net: Network, server: Server, flops: int, device: int, episode: tuple, rng, log: list, got, e: int):
    """One inference: the head computes, the device sends, the server takes what has arrived by
    each budget."""
    env, (head_s, sizes, budgets) = net.env, episode
    t0 = env.now
    yield from net.compute(device, head_s)
    mailbox = simpy.Store(env)
    sender = env.process(_sender(net, device, sizes, t0 + max(budgets), rng, mailbox, log, e, t0))
    yield from _receiver(env, server, flops, mailbox, t0, budgets, got, e)
    yield sender


def simulate_link(
    net: Network,
    server: Server,
    episodes: Sequence[tuple[float, Sequence[int], Sequence[float]]],
    rng_for: Callable[[int], np.random.Generator],
    *,
    server_flops: int = 0,
    senders: int = 1,
) -> LinkRun:
    """Play `episodes` (head seconds, slice sizes in bytes, budgets) on the network's clock,
    device d (of `senders`) playing episodes d, d + senders, ... one after another, episode e
    drawing its link outcomes from `rng_for(e)`; the server runs `server_flops` at each budget.
    The timeline keeps what started by the end of each device's first `TIMELINE_EPISODES`."""
    env = net.env
    log: list[SliceEvent] = []
    got: dict = {}
    cut = [env.now]

    def driver(device: int):
        for k, e in enumerate(range(device, len(episodes), senders)):
            yield env.process(_episode(net, server, server_flops, device, episodes[e], rng_for(e), log, got, e))
            if k + 1 == TIMELINE_EPISODES:
                cut.append(env.now)

    for d in range(senders):
        env.process(driver(d))
    env.run()
    end_s = max(cut) if len(cut) > 1 else env.now
    rows = net.timeline.sorted() if net.timeline is not None else []
    # the server's tail at the last budget of the last episode kept starts as that episode ends
    kept = [r for r in rows if r["start_s"] < end_s or (r["device"] == "server" and r["start_s"] <= end_s)]
    return LinkRun(log, got, kept)


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

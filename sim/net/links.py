"""Links and messages: the link a channel setting describes, a device's radio sending messages
one at a time, and propagation into a mailbox.

Transfers come from `channels.transfer` (packets, CRC and resends, or flipped bits in raw mode);
these processes only decide *when* they happen on the SimPy clock and who waits for the radio.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import simpy

from channels import GilbertElliott, IndependentBits, Link, TransferOutcome, transfer
from sim.config import ChannelConfig

__all__ = ["Mailbox", "build_link", "carry", "propagate", "radio", "send", "transmit"]


def build_link(c: ChannelConfig) -> Link:
    """The link `channel.*` describes (the same for every device of the job)."""
    if c.model == "independent":
        errors = IndependentBits(c.ber)
    else:
        errors = GilbertElliott.from_mean_ber(c.ber, burst_bits=c.burst_bits, bad_ber=c.bad_ber)
    return Link(
        bandwidth_bps=c.bandwidth_bps,
        latency_s=c.latency_s,
        errors=errors,
        mode=c.mode,
        packet_bytes=c.packet_bytes,
        header_bytes=c.header_bytes,
        max_attempts=c.max_attempts,
    )


def radio(env: simpy.Environment) -> simpy.Resource:
    """A device's network interface: one message on the air at a time, the others queue."""
    return simpy.Resource(env, capacity=1)


def transmit(
    env: simpy.Environment,
    link: Link,
    nbytes: int,
    rng: np.random.Generator,
    *,
    through_latency: bool = True,
    started: Callable[[TransferOutcome], None] | None = None,
) -> Iterator:
    """Process (for `yield from`, with the radio held): one message of `nbytes` over `link`, its
    outcome drawn from `rng` when it starts; returns the `TransferOutcome`. The sender is busy
    for the airtime plus the latency, or, with `through_latency=False`, for the airtime only (the
    caller then `propagate`s what was delivered). `started(outcome)`, if given, is called as the
    message goes on the air (counters that must include messages in flight)."""
    out = transfer(link, nbytes, rng)
    if started is not None:
        started(out)
    yield from carry(env, out, link.latency_s if not through_latency else 0.0)
    return out


def carry(env: simpy.Environment, outcome: TransferOutcome, latency_s: float = 0.0) -> Iterator:
    """Process: the sender is busy with a transfer whose outcome is already drawn, for its time
    less `latency_s` (0: through the propagation latency; the link's latency: the airtime only)."""
    yield env.timeout(outcome.time_s - latency_s)


def send(
    env: simpy.Environment, interface: simpy.Resource, link: Link, nbytes: int, rng: np.random.Generator
) -> Iterator:
    """Process: wait for the `interface`, hold it while one message crosses the link; returns the
    `TransferOutcome`."""
    with interface.request() as req:
        yield req
        out = yield from transmit(env, link, nbytes, rng)
    return out


def propagate(env: simpy.Environment, latency_s: float, mailbox: simpy.Store, item) -> Iterator:
    """Process: `item` reaches `mailbox` one propagation latency from now."""
    yield env.timeout(latency_s)
    yield mailbox.put(item)


class Mailbox:
    """A receiver's inbox: messages in arrival order, and an event that fires on the next one."""

    def __init__(self, env: simpy.Environment) -> None:
        self.env, self.items, self._event = env, [], None

    def put(self, msg) -> None:
        self.items.append(msg)
        if self._event is not None and not self._event.triggered:
            self._event.succeed()

    def wait(self) -> simpy.Event:
        self._event = self.env.event()
        return self._event

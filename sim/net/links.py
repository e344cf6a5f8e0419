"""Links and messages: the link a channel setting describes, a device's radio sending messages
one at a time, and propagation into a mailbox.

Transfers themselves (over the medium, with the devices' states and energy) are
`sim.net.Network.transfer` and `.message`.
"""

from __future__ import annotations

from collections.abc import Iterator

import simpy

from channels import GilbertElliott, IndependentBits, Link
from sim.config import ChannelConfig

__all__ = ["Mailbox", "build_link", "propagate", "radio"]


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

"""One simulated NoNN system on the network of `sim.net`: a deployment's devices (one per
`DeviceProfile`, device i = profiles[i]) and the aggregator, on one clock, over one medium.
Every inference of a scenario runs on its system's clock, one after another, so its timeline
(timeline.csv) is the scenario's.

Each device reaches the network through its own interface (`DeviceProfile.message_s`, its
stack's cost per message, and `nic_bps`, its port's rate): its links are the channel's with that
cost added to their latency and their rate capped by its port (`through_nic`). A message between
two devices pays the sender's. The aggregator's share of a message's cost is inside the devices'
(its own profile's, an x86's, is not modelled apart).

The aggregator's one radio takes one message at a time, in both directions, on either medium:
the setting the devices' per-message costs are calibrated for (docs/nonn.md), and a property of
the devices, not of the medium. So the students' uploads queue at the aggregator on a shared
medium too (the same makespan processor sharing would give them: n airtimes), and what the
shared cell adds is contention with the other traffic on the air: the split baseline's
device-to-device slices, which split the (half-duplex) cell's capacity among them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np
import simpy

from channels import Link, TransferOutcome, transfer
from devices import DeviceProfile, fleet_of
from sim.config import Config
from sim.net import EnergyLedger, Medium, Network, Server, Timeline, radio
from sim.net.availability import AlwaysOnline
from sim.net.build import build_network

__all__ = ["Mark", "System", "Systems", "link_systems", "network_systems", "through_nic"]


@dataclass(frozen=True)
class Mark:
    """Where the clock and the energy ledger stood when an inference began."""

    start_s: float
    busy_j: np.ndarray


class System:
    """The devices of one deployment and the aggregator on one clock (`net.env`)."""

    def __init__(self, net: Network, server: Server, profiles: Sequence[DeviceProfile]):
        self.net, self.server, self.profiles = net, server, tuple(profiles)
        self.env: simpy.Environment = net.env
        self.radio = radio(self.env)  # the aggregator's: it sends one message at a time

    def link(self, device: int, direction: str) -> Link:
        return self.net.links(device)[0 if direction == "up" else 1]

    def with_server(self, device: int, direction: str, nbytes: int, rng: np.random.Generator) -> Iterator:
        """Process: one message between the aggregator and `device` (`down`: the image; `up`:
        features); its outcome is drawn from `rng` when it goes on the air. Returns (outcome,
        seconds on the air, the link's latency included)."""
        with self.radio.request() as req:
            yield req
            return (yield from self._carry(device, direction, nbytes, rng))

    def _carry(self, device: int, direction: str, nbytes: int, rng: np.random.Generator) -> Iterator:
        out = transfer(self.link(device, direction), nbytes, rng)
        start = self.env.now
        yield from self.net.transfer(device, direction, out)
        return out, self.env.now - start

    def message(self, src: int, dst: int, out: TransferOutcome) -> Iterator:
        """Process: device `src` sends `out` to device `dst`; returns the seconds it took."""
        start = self.env.now
        yield from self.net.message(src, dst, out)
        return self.env.now - start

    def compute(self, device: int, flops: int) -> Iterator:
        """Process: `device` runs `flops`; returns the seconds it computed."""
        seconds = flops / self.profiles[device].flops_per_s
        yield from self.net.compute(device, seconds)
        return seconds

    # --- one inference's account ------------------------------------------------------
    def mark(self) -> Mark:
        return Mark(self.env.now, self.net.ledger.energy_j[:, :3].sum(axis=1))

    def energy_j(self, mark: Mark, device: int, busy_s: float, total_s: float) -> float:
        """`device`'s energy since `mark`: its busy states as the ledger booked them, and idle
        for the rest of `total_s`."""
        busy_j = float(self.net.ledger.energy_j[device, :3].sum() - mark.busy_j[device])
        return busy_j + self.profiles[device].energy_j("idle", max(0.0, total_s - busy_s))


Systems = Callable[[Sequence[DeviceProfile]], System]  # a deployment's profiles -> its system
Links = Callable[[int], tuple[Link, Link]]  # device -> its (up, down) links


def through_nic(link: Link, profile: DeviceProfile) -> Link:
    """`link` as a device of `profile` sees it: its per-message cost added to the latency, its
    port's rate a cap on the bandwidth."""
    return replace(
        link,
        latency_s=link.latency_s + profile.message_s,
        bandwidth_bps=min(link.bandwidth_bps, profile.nic_bps),
    )


def _device_links(links: Links, profiles: Sequence[DeviceProfile]) -> Links:
    """Each device's links through its own network interface."""
    seen = [tuple(through_nic(link, p) for link in links(d)) for d, p in enumerate(profiles)]
    return lambda d: seen[d]


def _label(profiles: Sequence[DeviceProfile]) -> Callable[[int], str]:
    return lambda d: f"{d} {profiles[d].name}"


def network_systems(cfg: Config, server: DeviceProfile) -> Systems:
    """Systems on the network `cfg.channel` describes (`sim.net.build_network`), `server` the aggregator."""

    def system(profiles: Sequence[DeviceProfile]) -> System:
        net, srv = build_network(cfg, fleet_of(list(profiles)), label=_label(profiles), own_devices=server)
        return System(replace(net, links=_device_links(net.links, profiles)), srv, profiles)

    return system


def link_systems(link: Link, server: DeviceProfile, medium: str = "dedicated") -> Systems:
    """Systems whose devices all have `link` both ways; a `shared` medium is one half-duplex cell
    of the link's bandwidth (tests, the paper's deployments)."""

    def system(profiles: Sequence[DeviceProfile]) -> System:
        env = simpy.Environment()
        fleet = fleet_of(list(profiles))
        ledger = EnergyLedger.of(fleet)
        cells = Medium(env, medium, up_bps=link.bandwidth_bps, duplex="half")
        timeline = Timeline()
        links = _device_links(lambda _d: (link, link), profiles)
        net = Network(env, ledger, cells, AlwaysOnline(), links, _label(profiles), timeline)
        return System(net, Server(env, server, timeline), profiles)

    return system

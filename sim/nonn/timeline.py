"""The SimPy processes of one inference: a NoNN (the server sends the image, devices run their
students and send the pooled features back) and the horizontally split baseline (devices
exchange slices of every convolution's input).

The real computation has already happened: FLOPs and payload bytes come in an `InferencePlan` or
a list of `SplitLayer`s. These processes only decide *when* each part happens, over the
`sim.net` radio and link, and what it costs each device in energy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import simpy

from channels import Link
from devices import DeviceProfile
from experiments.nonn.inference import InferencePlan
from experiments.nonn.split import SplitLayer
from sim.net import radio, send

__all__ = ["DeviceLoad", "DeviceTrace", "InferenceOutcome", "device_energy_j", "simulate_inference", "simulate_split"]


@dataclass(frozen=True)
class DeviceLoad:
    """One device of a NoNN deployment: its profile and the students it runs (in order)."""

    profile: DeviceProfile
    students: tuple[int, ...]


@dataclass
class DeviceTrace:
    """What one device did during one inference: its work, its seconds in each state, its energy."""

    device: int
    profile: str
    students: tuple[int, ...]
    failed: bool = False
    compute_flops: int = 0
    compute_s: float = 0.0
    download_s: float = 0.0
    upload_s: float = 0.0
    receive_s: float = 0.0  # other receptions (the split baseline's slices)
    retransmissions: int = 0
    energy_j: float = 0.0


@dataclass
class InferenceOutcome:
    """One simulated inference: its latency, each device's trace, and what the link delivered."""

    latency_s: float
    devices: list[DeviceTrace]
    arrived: dict[int, np.ndarray] = field(default_factory=dict)  # student -> flip positions in its features
    bits_flipped: int = 0
    image_flips: dict[int, np.ndarray] = field(default_factory=dict)  # device -> flips in its copy of the image (raw)


def device_energy_j(tr: DeviceTrace, p: DeviceProfile, total_s: float) -> float:
    """A device's energy over an inference of `total_s`: computing, receiving (the image and
    any slices), transmitting, and idle for the rest."""
    busy_s = tr.compute_s + tr.download_s + tr.upload_s + tr.receive_s
    return (
        p.energy_j("compute", tr.compute_s)
        + p.energy_j("receive", tr.download_s + tr.receive_s)
        + p.energy_j("transmit", tr.upload_s)
        + p.energy_j("idle", max(0.0, total_s - busy_s))
    )


class _NonnInference:
    """The processes of one NoNN inference (see `simulate_inference`)."""

    def __init__(
        self,
        plan: InferencePlan,
        loads: Sequence[DeviceLoad],
        link: Link,
        rng: np.random.Generator,
        failed: frozenset[int],
    ):
        self.env = simpy.Environment()
        self.radio = radio(self.env)  # the server's, in both directions
        self.plan, self.link, self.rng = plan, link, rng
        self.traces = [
            DeviceTrace(d, load.profile.name, load.students, failed=d in failed) for d, load in enumerate(loads)
        ]
        self.expected = sum(len(load.students) for load in loads)  # the aggregator does not know who failed
        self.arrivals: dict[int, np.ndarray] = {}
        self.image_flips: dict[int, np.ndarray] = {}
        self.all_in = self.env.event()
        self.flips = 0

    def over_link(self, tr: DeviceTrace, nbytes: int, direction: str):
        """Process: one message between the server and a device, through the server's radio."""
        out = yield from send(self.env, self.radio, self.link, nbytes, self.rng)
        tr.retransmissions += out.attempts - out.packets
        if direction == "down":
            tr.download_s += out.time_s
        else:
            tr.upload_s += out.time_s
        return out

    def device(self, d: int, load: DeviceLoad):
        """Process: receive the image, then per student compute and send its pooled features."""
        tr, plan = self.traces[d], self.plan
        got = yield from self.over_link(tr, plan.image_bytes, "down")
        if not got.delivered:
            return
        if len(got.flip_positions):
            self.image_flips[d] = got.flip_positions
            self.flips += len(got.flip_positions)
        for j, s in enumerate(load.students):
            flops = plan.branch_flops[s] + (plan.common_flops if j == 0 else 0)
            dt = flops / load.profile.flops_per_s
            tr.compute_flops += flops
            tr.compute_s += dt
            yield self.env.timeout(dt)
            out = yield from self.over_link(tr, plan.feature_bytes[s], "up")
            if out.delivered:
                self.arrivals[s] = out.flip_positions
                self.flips += len(out.flip_positions)
                if len(self.arrivals) == self.expected and not self.all_in.triggered:
                    self.all_in.succeed()

    def aggregator(self, server: DeviceProfile, deadline_s: float):
        """Process: wait for every student or the deadline, then apply the FC layer."""
        if self.expected:
            yield self.all_in | self.env.timeout(deadline_s)
        else:
            yield self.env.timeout(deadline_s)
        yield self.env.timeout(self.plan.fc_flops / server.flops_per_s)


def simulate_inference(
    plan: InferencePlan,
    loads: Sequence[DeviceLoad],
    server: DeviceProfile,
    link: Link,
    rng: np.random.Generator,
    *,
    failed: frozenset[int] = frozenset(),
    deadline_s: float = math.inf,
) -> InferenceOutcome:
    """One NoNN inference as SimPy processes.

    The server sends the image to each live device in turn; its radio handles one message at a
    time, in both directions. A device runs its students one after the other (the common part
    once) and sends each student's pooled features as soon as they are ready. The server applies
    the FC layer when every student has arrived, or at `deadline_s`, to what has arrived
    (missing features count as zeros). A failed device never answers; a transfer the link gives
    up on never arrives.
    """
    sim = _NonnInference(plan, loads, link, rng, failed)
    for d in sorted(range(len(loads))):
        if d not in failed:
            sim.env.process(sim.device(d, loads[d]))
    done = sim.env.process(sim.aggregator(server, deadline_s))
    sim.env.run(until=done)
    total = sim.env.now
    for tr, load in zip(sim.traces, loads):
        tr.energy_j = 0.0 if tr.failed else device_energy_j(tr, load.profile, total)
    return InferenceOutcome(total, sim.traces, dict(sim.arrivals), sim.flips, dict(sim.image_flips))


class _SplitInference:
    """The processes of one inference of the split baseline (see `simulate_split`)."""

    def __init__(
        self, layers: Sequence[SplitLayer], profiles: Sequence[DeviceProfile], link: Link, rng: np.random.Generator
    ):
        self.env = env = simpy.Environment()
        n = len(profiles)
        self.layers, self.profiles, self.link, self.rng = layers, profiles, link, rng
        self.radios = [radio(env) for _ in range(n)]
        self.server_radio = radio(env)
        self.traces = [DeviceTrace(d, p.name, ()) for d, p in enumerate(profiles)]
        # slice_in[l][d][s]: device d has device s's slice of layer l's input
        self.slice_in = [[[env.event() for _src in range(n)] for _d in range(n)] for _l in layers]
        self.image_in = [env.event() for _ in range(n)]
        self.results = [env.event() for _ in range(n)]
        self.lost = False

    def exchange(self, src: int, dst: int, nbytes: int, arrived: simpy.Event):
        """Process: device `src` sends its slice to device `dst` through its own radio."""
        out = yield from send(self.env, self.radios[src], self.link, nbytes, self.rng)
        self.traces[src].upload_s += out.time_s
        self.traces[dst].receive_s += out.time_s
        self.traces[src].retransmissions += out.attempts - out.packets
        if out.delivered:
            arrived.succeed()
        else:
            self.lost = True

    def broadcast(self, image_bytes: int):
        """Process: the server sends the image to every device in turn."""
        for d in range(len(self.profiles)):
            out = yield from send(self.env, self.server_radio, self.link, image_bytes, self.rng)
            self.traces[d].download_s += out.time_s
            if out.delivered:
                self.image_in[d].succeed()
            else:
                self.lost = True

    def device(self, d: int, pooled_bytes: int):
        """Process: per convolution, gather the input slices, compute this device's share; then
        send the pooled slice to the server."""
        env, n, tr = self.env, len(self.profiles), self.traces[d]
        yield self.image_in[d]
        for li, layer in enumerate(self.layers):
            if any(layer.exchange_bytes):
                mine = [self.slice_in[li][d][s] for s in range(n) if s != d]
                for s in range(n):
                    if s != d:
                        env.process(self.exchange(d, s, layer.exchange_bytes[d], self.slice_in[li][s][d]))
                yield env.all_of(mine)
            dt = layer.flops[d] / self.profiles[d].flops_per_s
            tr.compute_flops += layer.flops[d]
            tr.compute_s += dt
            yield env.timeout(dt)
        out = yield from send(env, self.server_radio, self.link, pooled_bytes, self.rng)
        tr.upload_s += out.time_s
        if out.delivered:
            self.results[d].succeed()
        else:
            self.lost = True

    def aggregator(self, fc_flops: int, server: DeviceProfile):
        """Process: wait for every device's pooled slice, then apply the FC layer."""
        yield self.env.all_of(self.results)
        yield self.env.timeout(fc_flops / server.flops_per_s)


def simulate_split(
    layers: Sequence[SplitLayer],
    pooled_bytes: Sequence[int],
    image_bytes: int,
    fc_flops: int,
    profiles: Sequence[DeviceProfile],
    server: DeviceProfile,
    link: Link,
    rng: np.random.Generator,
) -> InferenceOutcome:
    """One inference of the horizontally split baseline as SimPy processes.

    The server sends the image to every device; then, for each convolution in order, each
    device first gathers the input slices the others send it (each device's radio sends one
    message at a time), then computes its share; finally each device sends its pooled slice to
    the server, which applies the FC layer. A transfer the link gives up on stalls the inference
    (latency = inf)."""
    sim = _SplitInference(layers, profiles, link, rng)
    sim.env.process(sim.broadcast(image_bytes))
    for d in range(len(profiles)):
        sim.env.process(sim.device(d, pooled_bytes[d]))
    done = sim.env.process(sim.aggregator(fc_flops, server))
    sim.env.run()  # every process ends; a lost transfer leaves `done` untriggered
    total = sim.env.now if done.triggered and not sim.lost else math.inf
    for tr, p in zip(sim.traces, profiles):
        tr.energy_j = device_energy_j(tr, p, sim.env.now)
    return InferenceOutcome(total, sim.traces)

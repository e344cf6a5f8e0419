"""The SimPy processes of one inference: a NoNN (the server sends the image, devices run their
students and send the pooled features back) and the horizontally split baseline (devices
exchange slices of every convolution's input).

The real computation has already happened: FLOPs and payload bytes come in an `InferencePlan` or
a list of `SplitLayer`s. These processes only decide *when* each part happens, on the clock of a
`System` (its devices, aggregator and medium: `sim.nonn.system`), and what it costs each device
in energy (the network's ledger). Successive inferences on one system run one after another.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from channels import transfer
from devices import DeviceProfile
from experiments.nonn.inference import InferencePlan
from experiments.nonn.split import SplitLayer
from sim.net import radio
from sim.nonn.system import Mark, System

__all__ = ["DeviceLoad", "DeviceTrace", "InferenceOutcome", "simulate_inference", "simulate_split"]


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
    receive_s: float = 0.0  # other receptions (the split baseline's slices; heard at once: counted once)
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


def _covered_s(intervals: list[tuple[float, float]]) -> float:
    """Seconds covered by the union of `intervals` (messages heard at once count once)."""
    total, end = 0.0, -math.inf
    for a, b in sorted(intervals):
        if b > end:
            total += b - max(a, end)
            end = b
    return total


def _settle(system: System, mark: Mark, traces: list[DeviceTrace], total_s: float) -> None:
    """Each working device's energy over an inference of `total_s` since `mark`: its busy states
    as the network's ledger booked them, idle for the rest."""
    for tr in traces:
        if not tr.failed:
            busy_s = tr.compute_s + tr.download_s + tr.upload_s + tr.receive_s
            tr.energy_j = system.energy_j(mark, tr.device, busy_s, total_s)


class _NonnInference:
    """The processes of one NoNN inference (see `simulate_inference`)."""

    def __init__(
        self,
        system: System,
        plan: InferencePlan,
        loads: Sequence[DeviceLoad],
        rng: np.random.Generator,
        failed: frozenset[int],
    ):
        self.system, self.env = system, system.env
        self.plan, self.rng = plan, rng
        self.traces = [
            DeviceTrace(d, load.profile.name, load.students, failed=d in failed) for d, load in enumerate(loads)
        ]
        self.expected = sum(len(load.students) for load in loads)  # the aggregator does not know who failed
        self.arrivals: dict[int, np.ndarray] = {}
        self.image_flips: dict[int, np.ndarray] = {}
        self.all_in = self.env.event()
        self.flips = 0

    def over_link(self, tr: DeviceTrace, nbytes: int, direction: str):
        """Process: one message between the aggregator and a device."""
        out, seconds = yield from self.system.with_server(tr.device, direction, nbytes, self.rng)
        tr.retransmissions += out.attempts - out.packets
        if direction == "down":
            tr.download_s += seconds
        else:
            tr.upload_s += seconds
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
            tr.compute_flops += flops
            tr.compute_s += yield from self.system.compute(d, flops)
            out = yield from self.over_link(tr, plan.feature_bytes[s], "up")
            if out.delivered:
                self.arrivals[s] = out.flip_positions
                self.flips += len(out.flip_positions)
                if len(self.arrivals) == self.expected and not self.all_in.triggered:
                    self.all_in.succeed()

    def aggregator(self, deadline_s: float):
        """Process: wait for every student or the deadline, then apply the FC layer."""
        if self.expected:
            yield self.all_in | self.env.timeout(deadline_s)
        else:
            yield self.env.timeout(deadline_s)
        yield from self.system.server.compute(self.plan.fc_flops)


def simulate_inference(
    plan: InferencePlan,
    loads: Sequence[DeviceLoad],
    system: System,
    rng: np.random.Generator,
    *,
    failed: frozenset[int] = frozenset(),
    deadline_s: float = math.inf,
) -> InferenceOutcome:
    """One NoNN inference on `system` (device d runs `loads[d]`), from the clock's now.

    The aggregator sends the image to each live device in turn (its radio sends one message at a
    time). A device runs its students one after the other (the common part once) and sends each
    student's pooled features as soon as they are ready: on a dedicated medium they wait for the
    aggregator's radio (one message at a time, in both directions), on a shared one they share
    the cell's uplink. The aggregator applies the FC layer when every student has arrived, or at
    `deadline_s`, to what has arrived (missing features count as zeros). A failed device never
    answers; a transfer the link gives up on never arrives. Devices still working at the
    deadline finish before the call returns (the next inference finds the system idle).
    """
    sim = _NonnInference(system, plan, loads, rng, failed)
    mark, env = system.mark(), system.env
    working = [env.process(sim.device(d, loads[d])) for d in range(len(loads)) if d not in failed]
    done = env.process(sim.aggregator(deadline_s))
    env.run(until=done)
    total = env.now - mark.start_s
    env.run(until=env.all_of(working))
    _settle(system, mark, sim.traces, total)
    return InferenceOutcome(total, sim.traces, dict(sim.arrivals), sim.flips, dict(sim.image_flips))


class _SplitInference:
    """The processes of one inference of the split baseline (see `simulate_split`)."""

    def __init__(self, system: System, layers: Sequence[SplitLayer], rng: np.random.Generator):
        self.system, self.env = system, system.env
        env, n = self.env, len(system.profiles)
        self.layers, self.rng = layers, rng
        self.radios = [radio(env) for _ in range(n)]
        self.traces = [DeviceTrace(d, p.name, ()) for d, p in enumerate(system.profiles)]
        # slice_in[l][d][s]: device d has device s's slice of layer l's input
        self.slice_in = [[[env.event() for _src in range(n)] for _d in range(n)] for _l in layers]
        self.image_in = [env.event() for _ in range(n)]
        self.results = [env.event() for _ in range(n)]
        self.heard: list[list[tuple[float, float]]] = [[] for _ in range(n)]  # slices each device heard
        self.lost = False

    def exchange(self, src: int, dst: int, nbytes: int, arrived):
        """Process: device `src` sends its slice to device `dst` through its own radio."""
        with self.radios[src].request() as req:
            yield req
            out = transfer(self.system.link(src, "up"), nbytes, self.rng)
            start = self.env.now
            seconds = yield from self.system.message(src, dst, out)
        self.heard[dst].append((start, self.env.now))
        self.traces[src].upload_s += seconds
        self.traces[src].retransmissions += out.attempts - out.packets
        if out.delivered:
            arrived.succeed()
        else:
            self.lost = True

    def broadcast(self, image_bytes: int):
        """Process: the aggregator sends the image to every device in turn."""
        for d in range(len(self.traces)):
            out, seconds = yield from self.system.with_server(d, "down", image_bytes, self.rng)
            self.traces[d].download_s += seconds
            if out.delivered:
                self.image_in[d].succeed()
            else:
                self.lost = True

    def device(self, d: int, pooled_bytes: int):
        """Process: per convolution, gather the input slices, compute this device's share; then
        send the pooled slice to the aggregator."""
        env, n, tr = self.env, len(self.traces), self.traces[d]
        yield self.image_in[d]
        for li, layer in enumerate(self.layers):
            if any(layer.exchange_bytes):
                mine = [self.slice_in[li][d][s] for s in range(n) if s != d]
                for s in range(n):
                    if s != d:
                        env.process(self.exchange(d, s, layer.exchange_bytes[d], self.slice_in[li][s][d]))
                yield env.all_of(mine)
            tr.compute_flops += layer.flops[d]
            tr.compute_s += yield from self.system.compute(d, layer.flops[d])
        out, seconds = yield from self.system.with_server(d, "up", pooled_bytes, self.rng)
        tr.upload_s += seconds
        if out.delivered:
            self.results[d].succeed()
        else:
            self.lost = True

    def aggregator(self, fc_flops: int):
        """Process: wait for every device's pooled slice, then apply the FC layer."""
        yield self.env.all_of(self.results)
        yield from self.system.server.compute(fc_flops)


def simulate_split(
    layers: Sequence[SplitLayer],
    pooled_bytes: Sequence[int],
    image_bytes: int,
    fc_flops: int,
    system: System,
    rng: np.random.Generator,
) -> InferenceOutcome:
    """One inference of the horizontally split baseline on `system`, from the clock's now.

    The aggregator sends the image to every device; then, for each convolution in order, each
    device first gathers the input slices the others send it (each device's radio sends one
    message at a time; a device hearing several at once receives them in one receive state),
    then computes its share; finally each device sends its pooled slice to the aggregator,
    which applies the FC layer. A transfer the link gives up on stalls the inference
    (latency = inf)."""
    sim = _SplitInference(system, layers, rng)
    mark, env = system.mark(), system.env
    env.process(sim.broadcast(image_bytes))
    for d in range(len(sim.traces)):
        env.process(sim.device(d, pooled_bytes[d]))
    done = env.process(sim.aggregator(fc_flops))
    env.run()  # every process ends; a lost transfer leaves `done` untriggered
    span = env.now - mark.start_s
    total = span if done.triggered and not sim.lost else math.inf
    for tr, heard in zip(sim.traces, sim.heard):
        tr.receive_s = _covered_s(heard)
    _settle(system, mark, sim.traces, span)
    return InferenceOutcome(total, sim.traces)

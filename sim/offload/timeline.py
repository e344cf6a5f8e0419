"""The offload example's timeline: a sensor captures an image every `period_s` and either
classifies it itself (`local`) or sends it to the edge server and waits for the label (`offload`).

The real computation has already happened (one inference's FLOPs, the image's bytes); these
SimPy processes only decide when each answer comes back and what the sensor spends on it. Each
mode is one simulated system on one clock (`offload_network`): the sensor and the server are
devices of a `sim.net.Network`, their transfers cross its medium (`Network.transfer`), their
computations take their time on it (`Network.compute`, `Server.compute`), and their states go
into its timeline. Each side's radio sends one message at a time (`sim.net.radio`), so images
queue behind a slow link.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import simpy

from channels import TransferOutcome, transfer
from devices import DeviceProfile, fleet_of
from sim.config import Config
from sim.net import Network, Server, radio
from sim.net.build import build_network
from sim.seeding import stream

__all__ = ["ANSWER_BYTES", "MODES", "SENSOR", "Answer", "Costs", "offload_network", "send", "simulate"]

MODES = ("local", "offload")
ANSWER_BYTES = 1  # the label the server sends back
SENSOR = 0  # the sensor's index on the network (its one device)


@dataclass(frozen=True)
class Costs:
    """What one inference costs, measured on the real model and data."""

    flops: int
    image_bytes: int


@dataclass
class Answer:
    """What became of one captured image."""

    mode: str
    image: int
    latency_s: float = math.nan  # capture to answer; NaN: no answer (a transfer was given up)
    device_energy_j: float = 0.0  # the sensor's compute, or its transmit and listen, for this image
    bytes_sent: int = 0  # on the link both ways: headers and resends included
    retransmissions: int = 0
    image_flips: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # raw mode: bits flipped
    answer_flips: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))

    @property
    def answered(self) -> bool:
        return not math.isnan(self.latency_s)


def _book(answer: Answer, out: TransferOutcome, energy_j: float) -> None:
    answer.bytes_sent += out.bits_sent // 8
    answer.retransmissions += out.retransmissions
    answer.device_energy_j += energy_j


def offload_network(cfg: Config, device: DeviceProfile, server: DeviceProfile) -> tuple[Network, Server]:
    """One simulated system: the sensor (`device`) and the edge server (`server`) on the medium
    and links of `channel.*`, on one clock."""
    return build_network(cfg, fleet_of([device]), label=lambda _d: "sensor", own_devices=server)


def send(net: Network, interface: simpy.Resource, direction: str, nbytes: int, rng: np.random.Generator):
    """Process: wait for the `interface` (the sender's radio), then one message of `nbytes`
    between the sensor and the server (`up`: the sensor sends; `down`: it receives) over the
    medium, its outcome drawn from `rng` as it starts; returns the `TransferOutcome`."""
    link = net.links(SENSOR)[0 if direction == "up" else 1]
    with interface.request() as req:
        yield req
        out = transfer(link, nbytes, rng)
        yield from net.transfer(SENSOR, direction, out)
    return out


def simulate(
    mode: str,
    costs: Costs,
    images: int,
    period_s: float,
    device: DeviceProfile,
    system: tuple[Network, Server],
    seed: int,
) -> list[Answer]:
    """Every image's fate in `mode` on the clock of `system` (`offload_network`). Each image's
    transfers draw from their own stream (`seed`, image), so they do not depend on the order
    the processes run in."""
    net, server = system
    env = net.env
    cpu, sensor_radio, server_radio = simpy.Resource(env, capacity=1), radio(env), radio(env)
    answers = [Answer(mode, i) for i in range(images)]

    def local(a: Answer):
        with cpu.request() as req:
            yield req
            compute_s = device.compute_time_s(costs.flops)
            yield from net.compute(SENSOR, compute_s)
        a.device_energy_j += device.energy_j("compute", compute_s)
        return True

    def offload(a: Answer):
        rng = stream(seed, "offload", a.image)
        up = yield from send(net, sensor_radio, "up", costs.image_bytes, rng)
        _book(a, up, device.energy_j("transmit", up.time_s))
        if not up.delivered:
            return False
        a.image_flips, sent_s = up.flip_positions, env.now
        yield from server.compute(costs.flops)
        down = yield from send(net, server_radio, "down", ANSWER_BYTES, rng)
        _book(a, down, device.energy_j("receive", env.now - sent_s))  # the sensor listens until the label
        a.answer_flips = down.flip_positions
        return down.delivered

    def capture(a: Answer):
        start_s = env.now
        answered = yield from (local(a) if mode == "local" else offload(a))
        if answered:
            a.latency_s = env.now - start_s

    def sensor():
        for a in answers:
            env.process(capture(a))
            yield env.timeout(period_s)

    env.process(sensor())
    env.run()
    return answers

"""The offload example's timeline: a sensor captures an image every `period_s` and either
classifies it itself (`local`) or sends it to the edge server and waits for the label (`offload`).

The real computation has already happened (one inference's FLOPs, the image's bytes); these
SimPy processes only decide when each answer comes back and what the sensor spends on it. They
are built from `sim.net`: each side's radio sends one message at a time, so images queue behind
a slow link.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import simpy

from channels import Link, TransferOutcome
from devices import DeviceProfile
from sim.net import radio, send
from sim.seeding import stream

__all__ = ["ANSWER_BYTES", "MODES", "Answer", "Costs", "simulate"]

MODES = ("local", "offload")
ANSWER_BYTES = 1  # the label the server sends back


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


def simulate(
    mode: str,
    costs: Costs,
    images: int,
    period_s: float,
    device: DeviceProfile,
    server: DeviceProfile,
    link: Link,
    seed: int,
) -> list[Answer]:
    """Every image's fate in `mode` on one SimPy clock. Each image's transfers draw from their
    own stream (`seed`, image), so they do not depend on the order the processes run in."""
    env = simpy.Environment()
    cpu, sensor_radio, server_radio = simpy.Resource(env, capacity=1), radio(env), radio(env)
    answers = [Answer(mode, i) for i in range(images)]

    def local(a: Answer):
        with cpu.request() as req:
            yield req
            compute_s = device.compute_time_s(costs.flops)
            yield env.timeout(compute_s)
        a.device_energy_j += device.energy_j("compute", compute_s)
        return True

    def offload(a: Answer):
        rng = stream(seed, "offload", a.image)
        up = yield from send(env, sensor_radio, link, costs.image_bytes, rng)
        _book(a, up, device.energy_j("transmit", up.time_s))
        if not up.delivered:
            return False
        a.image_flips, sent_s = up.flip_positions, env.now
        yield env.timeout(server.compute_time_s(costs.flops))
        down = yield from send(env, server_radio, link, ANSWER_BYTES, rng)
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

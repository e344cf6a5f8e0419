"""The network of one mcPipe run: the master and the workers as devices of a `sim.net.Network`
on the run's one clock, and the messages between them.

Worker i is device i (`workload.devices[i % len]`, labelled `w<i>`), the master device N
(`workload.master_device`, labelled `master`); they are the workload's own devices
(`devices.fleet_of`), always online and mains powered. Every message goes device to device
(`Network.message`) over its sender's uplink and the medium of `channel.medium`: on a dedicated
medium it lasts its bits over the link's rate plus the latency; on a shared one the messages in
flight in a cell split its capacity. Each sender keeps one message on the air at a time (its
`sim.net.radio`); a compute step is `Network.compute`. Device states and their energy go into
the network's ledger and timeline.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np
import simpy
import torch

from channels import TransferOutcome, corrupt_arrays, transfer
from devices import CATALOGUE, fleet_of
from experiments.mcpipe.model import evaluate
from experiments.mcpipe.versions import nbytes
from sim.mcpipe.build import Job
from sim.mcpipe.report import LinkCounts
from sim.net import radio
from sim.net.build import build_network
from sim.seeding import stream

__all__ = ["MASTER", "TIMELINE_MICROBATCHES", "Links", "monitor"]

MASTER = "master"
# timeline rows kept per run: those that start before the master hands out this microbatch
# (a few pipeline fills and drains; the whole run would be tens of thousands of rows)
TIMELINE_MICROBATCHES = 32


class Links:
    """The network of one run with `workers` workers and a master: a radio per sender, each
    sender's seeded stream of link outcomes (keyed by the run and the sender) and what the
    messages cost (`counts`)."""

    def __init__(self, job: Job, workers: int, key: tuple) -> None:
        names = [f"w{i}" for i in range(workers)] + [MASTER]
        master = CATALOGUE[job.m.master_device]
        fleet = fleet_of([job.device(i) for i in range(workers)] + [master])
        self.net, _ = build_network(job.cfg, fleet, label=names.__getitem__, own_devices=master)
        self.env: simpy.Environment = self.net.env
        self.seed, self.key = job.cfg.seed, key
        self.index = {name: d for d, name in enumerate(names)}
        self.counts = LinkCounts()
        self.cutoff_s = math.inf  # the timeline is kept up to here (`mark`)
        self._radios: dict[str, simpy.Resource] = {}
        self._rngs: dict = {}

    def _sender(self, src: str) -> tuple:
        """`src`'s radio and its stream of link outcomes, made at its first message."""
        if src not in self._radios:
            self._radios[src] = radio(self.env)
            self._rngs[src] = stream(self.seed, "link", *self.key, src)
        return self._radios[src], self._rngs[src]

    def compute(self, name: str, seconds: float) -> Iterator:
        """Process (for `yield from`): device `name` computes for `seconds`."""
        yield from self.net.compute(self.index[name], seconds)

    def send(
        self, src: str, dst: str, payload: list[torch.Tensor], deliver: Callable[[list[torch.Tensor]], None]
    ) -> Iterator:
        """Process: hold `src`'s radio while the tensors go to `dst` (resent whole if the link
        gives up on a packet), then hand them to `deliver`. A message's bytes count from the
        moment it goes on the air (the monitor's `bytes_sent` includes messages in flight)."""
        interface, rng = self._sender(src)
        s, d = self.index[src], self.index[dst]
        link = self.net.links(s)[0]
        size = nbytes(*payload)
        with interface.request() as req:
            yield req
            while True:
                out = transfer(link, size, rng)
                self._count(out)
                yield from self.net.message(s, d, out)  # own devices: always online, no battery
                if out.delivered:
                    break
        deliver(self._received(payload, out))

    def _count(self, out: TransferOutcome) -> None:
        """One attempt's bytes on the air and packets resent."""
        self.counts.bytes_sent += out.bits_sent // 8
        self.counts.retransmissions += out.retransmissions

    def _received(self, payload: list[torch.Tensor], out: TransferOutcome) -> list[torch.Tensor]:
        """The tensors as they arrive: in raw mode with the flipped bits, in the floating-point
        ones only (integer labels are taken to travel with a checksum, a few bytes of control
        data, so a raw link cannot make a class out of range). `bits_flipped` counts the flips
        that reach a delivered tensor."""
        if not out.bits_flipped:
            return payload
        arrays = [t.contiguous().cpu().numpy() for t in payload]
        floats = [t.is_floating_point() for t in payload]
        self.counts.bits_flipped += _flips_in(arrays, floats, out.flip_positions)
        arrays = corrupt_arrays(arrays, out.flip_positions)
        return [torch.from_numpy(a).to(t.device) if f else t for a, f, t in zip(arrays, floats, payload)]

    def mark(self, microbatch: int) -> None:
        """The master hands out `microbatch` now: the timeline ends at `TIMELINE_MICROBATCHES`."""
        if microbatch >= TIMELINE_MICROBATCHES and self.cutoff_s == math.inf:
            self.cutoff_s = self.env.now

    def timeline(self) -> list[dict]:
        """timeline.csv rows (device, state, start_s, end_s) up to the cutoff: those that start
        before it, ending there at the latest (a device's back-to-back states are one row)."""
        cut = self.cutoff_s
        return [{**r, "end_s": min(r["end_s"], cut)} for r in self.net.timeline.sorted() if r["start_s"] < cut]


def _flips_in(arrays: list, floats: list[bool], positions) -> int:
    """How many of the flipped bit `positions` (of the arrays' bytes, concatenated) fall in
    the floating-point ones."""
    pos = np.sort(np.asarray(positions, dtype=np.int64).ravel())
    ends = np.cumsum([8 * a.nbytes for a in arrays])
    cut = np.searchsorted(pos, np.concatenate([[0], ends]))
    return int(sum(hi - lo for lo, hi, f in zip(cut[:-1], cut[1:], floats) if f))


def monitor(
    env: simpy.Environment, job: Job, params: Callable[[], list], counters: Callable[[], dict], rows: list[dict]
) -> Iterator:
    """Process: test accuracy of the current weights at 0, eval_every_s, ... up to sim_time_s
    (an observer: it costs no simulated time)."""
    m = job.m
    n = int(math.floor(m.sim_time_s / m.eval_every_s + 1e-9))
    x_test, y_test = job.test_set()
    for i in range(n + 1):
        if i:
            yield env.timeout(i * m.eval_every_s - env.now)
        acc, loss = evaluate(job.model.layers, params(), x_test, y_test)
        rows.append({"sim_time_s": env.now, "accuracy": acc, "loss": loss, **counters()})

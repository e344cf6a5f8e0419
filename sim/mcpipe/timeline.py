"""mcPipe's timeline: every run (model, N, schedule) as SimPy processes on its own network
(`sim.mcpipe.links`: the master and the workers as devices on one clock).

The real training happens inside these processes (`experiments.mcpipe`); they decide when. A
compute step lasts the FLOPs it really performed over the device's FLOP rate (`Network.compute`);
each activation, error, data, label or weight message holds its sender's radio while it goes to
its receiver over the medium (`Network.message` of its real bytes), the sender computing on
meanwhile; a monitor records test accuracy every `eval_every_s` simulated seconds until
`sim_time_s`. This module is the pipelines (PipeDream, mcPipe, GreedyUpdates); `baselines` the
local and data-parallel runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import simpy
import torch

from devices import DeviceProfile
from experiments.mcpipe.memory import Memory
from experiments.mcpipe.stage import Record, Stage
from experiments.mcpipe.versions import nbytes
from sim.mcpipe.baselines import simulate_data_parallel, simulate_local
from sim.mcpipe.build import Job
from sim.mcpipe.links import MASTER, Links, monitor
from sim.mcpipe.report import RunResult, run_result
from sim.net import Mailbox

__all__ = ["Links", "monitor", "simulate", "simulate_data_parallel", "simulate_local", "simulate_pipeline"]


@dataclass
class _Worker:
    """One pipeline stage's worker: what it received and has not used yet, the microbatches
    between their forward and their backward, and the kind of pass it did last."""

    index: int
    stage: Stage
    device: DeviceProfile
    limit: int  # microbatches in flight at most: m - s
    mem: Memory = field(default_factory=Memory)
    inputs: dict[int, torch.Tensor] = field(default_factory=dict)  # data or activations, by microbatch
    errors: dict[int, torch.Tensor] = field(default_factory=dict)
    labels: dict[int, torch.Tensor] = field(default_factory=dict)
    inflight: dict[int, Record] = field(default_factory=dict)
    next_k: int = 0  # the next microbatch to forward
    last: str = ""  # "F" or "B"

    def take(self, box: Mailbox) -> None:
        """Sort the messages that arrived into inputs, errors and labels."""
        for kind, k, t in box.items:
            {"x": self.inputs, "a": self.inputs, "d": self.errors, "y": self.labels}[kind][k] = t
        box.items.clear()

    def can_forward(self, last_stage: bool) -> bool:
        return (
            self.next_k in self.inputs
            and len(self.inflight) < self.limit
            and (not last_stage or self.next_k in self.labels)
        )

    def observe(self, working_bytes: int = 0) -> None:
        """Take what the worker holds now into its peaks (`working_bytes`: a rebuilt version in use)."""
        st, buffered = self.stage, nbytes(*self.inputs.values(), *self.errors.values())
        self.mem.observe(
            weights=st.stored_weight_bytes,
            vectors=st.vector_bytes,
            optimizer=st.optimizer_bytes,
            activations=sum(r.bytes for r in self.inflight.values()) + buffered,
            working=working_bytes,
            versions=st.num_versions,
        )


class _Pipeline:
    """One PipeDream / mcPipe / GreedyUpdates run (`simulate_pipeline`): a master that holds
    the data, a worker per stage, the links between them and a monitor."""

    def __init__(self, job: Job, schedule: str, n: int) -> None:
        self.job, self.schedule, self.n = job, schedule, n
        self.links = Links(job, n, (job.model.name, n, schedule))
        self.env = self.links.env
        self.depth = job.m.depth or n
        self.bounds = job.partition(n)
        init = job.params()
        self.workers = [
            _Worker(
                s, job.stage(schedule, s, b, init, first=s == 0, last=s == n - 1), job.device(s), max(1, self.depth - s)
            )
            for s, b in enumerate(self.bounds)
        ]
        self.boxes = [Mailbox(self.env) for _ in range(n)]
        self.credits = simpy.Container(self.env, capacity=job.m.prefetch, init=job.m.prefetch)
        self.batches = job.batches()
        self.trace: list[tuple] = []
        self.done = {"updates": 0, "samples": 0}

    def _to(self, s: int, kind: str, k: int) -> Callable[[list[torch.Tensor]], None]:
        """Delivery of microbatch k's one tensor of `kind` into worker s's mailbox."""
        box = self.boxes[s]
        return lambda p: box.put((kind, k, p[0]))

    def master(self) -> Iterator:
        """Process: microbatch k's images to the first stage, its labels to the last, at most
        `prefetch` ahead of the first stage's forwards."""
        k = 0
        while True:
            yield self.credits.get(1)
            x, y = self.batches(k)
            self.links.mark(k)
            yield self.env.process(self.links.send(MASTER, "w0", [x], self._to(0, "x", k)))
            yield self.env.process(self.links.send(MASTER, f"w{self.n - 1}", [y], self._to(self.n - 1, "y", k)))
            k += 1

    def worker(self, w: _Worker) -> Iterator:
        """Process: 1F1B. When both a forward and a backward are ready, the kind not done last."""
        w.observe()
        box = self.boxes[w.index]
        while True:
            w.take(box)
            can_f = w.can_forward(w.index == self.n - 1)
            if w.errors and not (can_f and w.last == "B"):
                yield from self.backward(w)
            elif can_f:
                yield from self.forward(w)
            else:
                yield box.wait()

    def forward(self, w: _Worker) -> Iterator:
        """The next microbatch's forward with the latest weights; its output goes on (the last
        stage turns it into the loss's error)."""
        w.last = "F"
        k, w.next_k = w.next_k, w.next_k + 1
        if w.index == 0:
            yield self.credits.put(1)
        out, rec, c = w.stage.forward(w.inputs.pop(k))
        w.inflight[k] = rec
        w.observe(c.working_bytes)
        self.trace.append((round(self.env.now, 9), w.index, "F", k, rec.version))
        yield from self.links.compute(f"w{w.index}", w.device.compute_time_s(c.total_flops))
        if w.index == self.n - 1:
            w.errors[k] = w.stage.loss_error(out, w.labels.pop(k))[1]
        else:
            self.env.process(self.links.send(f"w{w.index}", f"w{w.index + 1}", [out], self._to(w.index + 1, "a", k)))

    def backward(self, w: _Worker) -> Iterator:
        """The oldest waiting error's backward and the update, then the error goes down."""
        w.last = "B"
        k = min(w.errors)
        rec = w.inflight[k]
        d_in, pairs, c = w.stage.backward(rec, w.errors.pop(k))
        w.observe(c.working_bytes)
        del w.inflight[k]
        u = w.stage.update(pairs, min((r.version for r in w.inflight.values()), default=None))
        w.observe(u.working_bytes)
        self.trace.append((round(self.env.now, 9), w.index, "B", k, rec.version))
        yield from self.links.compute(f"w{w.index}", w.device.compute_time_s(c.total_flops + u.total_flops))
        if w.index == 0:
            self.done["updates"] += 1
            self.done["samples"] += self.job.m.microbatch
        else:
            self.env.process(self.links.send(f"w{w.index}", f"w{w.index - 1}", [d_in], self._to(w.index - 1, "d", k)))

    def params(self) -> list:
        """The latest weights of every stage, in layer order (what the monitor evaluates)."""
        return [p for w in self.workers for p in w.stage.latest_params()]

    def counters(self) -> dict:
        return {**self.done, "bytes_sent": self.links.counts.bytes_sent}

    def run(self) -> RunResult:
        rows: list[dict] = []
        self.env.process(self.master())
        for w in self.workers:
            self.env.process(self.worker(w))
        self.env.run(until=self.env.process(monitor(self.env, self.job, self.params, self.counters, rows)))
        return run_result(
            self.job,
            self.schedule,
            self.n,
            rows,
            self.links.counts,
            [w.mem for w in self.workers],
            self.bounds,
            self.depth,
            self.trace,
            self.links.timeline(),
        )


def simulate_pipeline(job: Job, schedule: str, n: int) -> RunResult:
    """PipeDream / mcPipe / GreedyUpdates on `n` workers: 1F1B, stage s admits up to m - s
    microbatches in flight (m = depth, default n); when both a forward and a backward are
    ready a stage does the kind it did not do last (one forward, one backward)."""
    return _Pipeline(job, schedule, n).run()


def simulate(job: Job, schedule: str, n: int) -> RunResult:
    """One run of `job`'s model under `schedule` on `n` workers (local: one)."""
    if schedule == "local":
        return simulate_local(job)
    if schedule == "data_parallel":
        return simulate_data_parallel(job, n)
    return simulate_pipeline(job, schedule, n)

"""mcPipe's timeline: every run (model, N, schedule) as SimPy processes on its own clock.

The real training happens inside these processes (`experiments.mcpipe`); they decide when. A
compute step lasts the FLOPs it really performed over the device's FLOP rate; each activation,
error, data, label or weight message holds its sender's radio (`sim.net.radio`) while it crosses
the link (`sim.net.transmit` of its real bytes), the sender computing on meanwhile; a monitor
records test accuracy every `eval_every_s` simulated seconds until `sim_time_s`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import simpy
import torch

from channels import Link, TransferOutcome, corrupt_arrays
from devices import DeviceProfile
from experiments.mcpipe.memory import Memory
from experiments.mcpipe.model import evaluate
from experiments.mcpipe.stage import Record, Stage
from experiments.mcpipe.training import average, set_latest, train_step
from experiments.mcpipe.versions import nbytes
from sim.mcpipe.build import Job
from sim.mcpipe.report import LinkCounts, RunResult, run_result
from sim.net import Mailbox, radio, transmit
from sim.seeding import stream

__all__ = ["Links", "monitor", "simulate", "simulate_data_parallel", "simulate_local", "simulate_pipeline"]


class Links:
    """The links of one run: a radio per sender, each sender's seeded stream of link outcomes
    (keyed by the run and the sender) and what the messages cost (`counts`)."""

    def __init__(self, env: simpy.Environment, link: Link, seed: int, key: tuple) -> None:
        self.env, self.link, self.seed, self.key = env, link, seed, key
        self.counts = LinkCounts()
        self._radios: dict[str, simpy.Resource] = {}
        self._rngs: dict = {}

    def _sender(self, src: str) -> tuple:
        """`src`'s radio and its stream of link outcomes, made at its first message."""
        if src not in self._radios:
            self._radios[src] = radio(self.env)
            self._rngs[src] = stream(self.seed, "link", *self.key, src)
        return self._radios[src], self._rngs[src]

    def send(self, src: str, payload: list[torch.Tensor], deliver: Callable[[list[torch.Tensor]], None]) -> Iterator:
        """Process: hold `src`'s radio while the tensors cross the link (resent whole if the
        link gives up on a packet), then hand them to `deliver`. A message's bytes count from
        the moment it goes on the air (the monitor's `bytes_sent` includes messages in flight)."""
        interface, rng = self._sender(src)
        size = nbytes(*payload)
        with interface.request() as req:
            yield req
            while True:
                out = yield from transmit(self.env, self.link, size, rng, started=self._count)
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
        data, so a raw link cannot make a class out of range)."""
        if not out.bits_flipped:
            return payload
        self.counts.bits_flipped += out.bits_flipped
        arrays = corrupt_arrays([t.contiguous().numpy() for t in payload], out.flip_positions)
        return [torch.from_numpy(a) if t.is_floating_point() else t for a, t in zip(arrays, payload)]


def monitor(
    env: simpy.Environment, job: Job, params: Callable[[], list], counters: Callable[[], dict], rows: list[dict]
) -> Iterator:
    """Process: test accuracy of the current weights at 0, eval_every_s, ... up to sim_time_s
    (an observer: it costs no simulated time)."""
    m = job.m
    n = int(math.floor(m.sim_time_s / m.eval_every_s + 1e-9))
    for i in range(n + 1):
        if i:
            yield env.timeout(i * m.eval_every_s - env.now)
        acc, loss = evaluate(job.model.layers, params(), job.data.x_test, job.data.y_test)
        rows.append({"sim_time_s": env.now, "accuracy": acc, "loss": loss, **counters()})


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
        self.job, self.schedule, self.n, self.env = job, schedule, n, simpy.Environment()
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
        self.links = Links(self.env, job.link, job.cfg.seed, (job.model.name, n, schedule))
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
            yield self.env.process(self.links.send("master", [x], self._to(0, "x", k)))
            yield self.env.process(self.links.send("master", [y], self._to(self.n - 1, "y", k)))
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
        yield self.env.timeout(w.device.compute_time_s(c.total_flops))
        if w.index == self.n - 1:
            w.errors[k] = w.stage.loss_error(out, w.labels.pop(k))[1]
        else:
            self.env.process(self.links.send(f"w{w.index}", [out], self._to(w.index + 1, "a", k)))

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
        yield self.env.timeout(w.device.compute_time_s(c.total_flops + u.total_flops))
        if w.index == 0:
            self.done["updates"] += 1
            self.done["samples"] += self.job.m.microbatch
        else:
            self.env.process(self.links.send(f"w{w.index}", [d_in], self._to(w.index - 1, "d", k)))

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
        )


def simulate_pipeline(job: Job, schedule: str, n: int) -> RunResult:
    """PipeDream / mcPipe / GreedyUpdates on `n` workers: 1F1B, stage s admits up to m - s
    microbatches in flight (m = depth, default n); when both a forward and a backward are
    ready a stage does the kind it did not do last (one forward, one backward)."""
    return _Pipeline(job, schedule, n).run()


def simulate_local(job: Job) -> RunResult:
    """Worker 0 trains the whole model on the data it holds, one microbatch per step."""
    env = simpy.Environment()
    stage = job.whole("pipedream", job.params())
    batches, mem, dev = job.batches(), Memory(), job.device(0)
    done = {"updates": 0, "samples": 0}
    trace: list[tuple] = []

    def worker() -> Iterator:
        k = 0
        while True:
            trace.append((round(env.now, 9), 0, "FB", k, stage.latest))
            flops = train_step(stage, *batches(k), mem)
            yield env.timeout(dev.compute_time_s(flops))
            done["updates"] += 1
            done["samples"] += job.m.microbatch
            k += 1

    rows: list[dict] = []
    env.process(worker())
    env.run(until=env.process(monitor(env, job, stage.latest_params, lambda: {**done, "bytes_sent": 0}, rows)))
    return run_result(job, "local", 1, rows, LinkCounts(), [mem], [(0, len(job.model.layers))], 1, trace)


class _DataParallel:
    """One data-parallel run (`simulate_data_parallel`): a master that holds the data and the
    averaged weights, n workers that each train the whole model."""

    def __init__(self, job: Job, n: int) -> None:
        self.job, self.n, self.env = job, n, simpy.Environment()
        self.averaged = job.params()  # the master's averaged weights
        self.stages = [job.whole("pipedream", job.params()) for _ in range(n)]
        self.mems = [Memory() for _ in range(n)]
        self.batches = job.batches()
        self.links = Links(self.env, job.link, job.cfg.seed, (job.model.name, n, "data_parallel"))
        self.done = {"updates": 0, "samples": 0}
        self.trace: list[tuple] = []

    def worker(self, i: int, t: int, x: torch.Tensor, y: torch.Tensor, uploads: list) -> Iterator:
        """Process: worker i's SGD step t on its microbatch; its weights go back to the master."""
        stage = self.stages[i]
        self.trace.append((round(self.env.now, 9), i, "FB", t * self.n + i, t))
        flops = train_step(stage, x, y, self.mems[i])
        yield self.env.timeout(self.job.device(i).compute_time_s(flops))
        flat = [tt for p in stage.latest_params() for tt in p]
        yield self.env.process(self.links.send(f"w{i}", flat, lambda p: uploads.__setitem__(i, p)))

    def hand_out(self, i: int, t: int, uploads: list) -> Iterator:
        """Process (for `yield from`): send worker i its microbatch of step t (and, after the
        first step, the averaged weights), then start its step; returns that process."""
        x, y = self.batches(t * self.n + i)
        weights = [tt for p in self.averaged for tt in p] if t else []
        got: dict = {}
        yield self.env.process(self.links.send("master", [*weights, x, y], lambda p: got.setdefault("p", p)))
        p = got["p"]
        if t:
            set_latest(self.stages[i], p[:-2])
        return self.env.process(self.worker(i, t, p[-2], p[-1], uploads))

    def master(self) -> Iterator:
        """Process: each step, every worker's microbatch out, every worker's weights back, averaged."""
        t = 0
        while True:
            uploads: list = [None] * self.n
            steps = []
            for i in range(self.n):
                step = yield from self.hand_out(i, t, uploads)
                steps.append(step)
            yield simpy.AllOf(self.env, steps)
            self.averaged = average(uploads)
            self.done["updates"] += 1
            self.done["samples"] += self.n * self.job.m.microbatch
            t += 1

    def counters(self) -> dict:
        return {**self.done, "bytes_sent": self.links.counts.bytes_sent}

    def run(self) -> RunResult:
        rows: list[dict] = []
        self.env.process(self.master())
        self.env.run(until=self.env.process(monitor(self.env, self.job, lambda: self.averaged, self.counters, rows)))
        whole = [(0, len(self.job.model.layers))] * self.n
        return run_result(self.job, "data_parallel", self.n, rows, self.links.counts, self.mems, whole, 1, self.trace)


def simulate_data_parallel(job: Job, n: int) -> RunResult:
    """Each step: the master sends every worker its microbatch (and, after the first step,
    the averaged weights); each worker takes one SGD step on its microbatch and sends its
    weights back; the master averages them. Microbatch k of step t goes to worker k - t*n."""
    return _DataParallel(job, n).run()


def simulate(job: Job, schedule: str, n: int) -> RunResult:
    """One run of `job`'s model under `schedule` on `n` workers (local: one)."""
    if schedule == "local":
        return simulate_local(job)
    if schedule == "data_parallel":
        return simulate_data_parallel(job, n)
    return simulate_pipeline(job, schedule, n)

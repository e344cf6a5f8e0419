"""The runs mcPipe is compared with, on the same network as the pipelines (`sim.mcpipe.links`):
local training on worker 0, and data-parallel training with weight averaging at the master."""

from __future__ import annotations

from collections.abc import Iterator

import simpy
import torch

from experiments.mcpipe.memory import Memory
from experiments.mcpipe.training import average, set_latest, train_step
from sim.mcpipe.build import Job
from sim.mcpipe.links import MASTER, Links, monitor
from sim.mcpipe.report import RunResult, run_result

__all__ = ["simulate_data_parallel", "simulate_local"]


def simulate_local(job: Job) -> RunResult:
    """Worker 0 trains the whole model on the data it holds, one microbatch per step."""
    links = Links(job, 1, (job.model.name, 1, "local"))
    env = links.env
    stage = job.whole("pipedream", job.params())
    batches, mem, dev = job.batches(), Memory(), job.device(0)
    done = {"updates": 0, "samples": 0}
    trace: list[tuple] = []

    def worker() -> Iterator:
        k = 0
        while True:
            links.mark(k)
            trace.append((round(env.now, 9), 0, "FB", k, stage.latest))
            flops = train_step(stage, *batches(k), mem)
            yield from links.compute("w0", dev.compute_time_s(flops))
            done["updates"] += 1
            done["samples"] += job.m.microbatch
            k += 1

    rows: list[dict] = []
    env.process(worker())
    env.run(until=env.process(monitor(env, job, stage.latest_params, lambda: {**done, "bytes_sent": 0}, rows)))
    whole = [(0, len(job.model.layers))]
    return run_result(job, "local", 1, rows, links.counts, [mem], whole, 1, trace, links.timeline())


class _DataParallel:
    """One data-parallel run (`simulate_data_parallel`): a master that holds the data and the
    averaged weights, n workers that each train the whole model."""

    def __init__(self, job: Job, n: int) -> None:
        self.job, self.n = job, n
        self.links = Links(job, n, (job.model.name, n, "data_parallel"))
        self.env = self.links.env
        self.averaged = job.params()  # the master's averaged weights
        self.stages = [job.whole("pipedream", job.params()) for _ in range(n)]
        self.mems = [Memory() for _ in range(n)]
        self.batches = job.batches()
        self.done = {"updates": 0, "samples": 0}
        self.trace: list[tuple] = []

    def worker(self, i: int, t: int, x: torch.Tensor, y: torch.Tensor, uploads: list) -> Iterator:
        """Process: worker i's SGD step t on its microbatch; its weights go back to the master."""
        stage = self.stages[i]
        self.trace.append((round(self.env.now, 9), i, "FB", t * self.n + i, t))
        flops = train_step(stage, x, y, self.mems[i])
        yield from self.links.compute(f"w{i}", self.job.device(i).compute_time_s(flops))
        flat = [tt for p in stage.latest_params() for tt in p]
        yield self.env.process(self.links.send(f"w{i}", MASTER, flat, lambda p: uploads.__setitem__(i, p)))

    def hand_out(self, i: int, t: int, uploads: list) -> Iterator:
        """Process (for `yield from`): send worker i its microbatch of step t (and, after the
        first step, the averaged weights), then start its step; returns that process."""
        x, y = self.batches(t * self.n + i)
        self.links.mark(t * self.n + i)
        weights = [tt for p in self.averaged for tt in p] if t else []
        got: dict = {}
        yield self.env.process(self.links.send(MASTER, f"w{i}", [*weights, x, y], lambda p: got.setdefault("p", p)))
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
        links = self.links
        return run_result(
            self.job, "data_parallel", self.n, rows, links.counts, self.mems, whole, 1, self.trace, links.timeline()
        )


def simulate_data_parallel(job: Job, n: int) -> RunResult:
    """Each step: the master sends every worker its microbatch (and, after the first step,
    the averaged weights); each worker takes one SGD step on its microbatch and sends its
    weights back; the master averages them. Microbatch k of step t goes to worker k - t*n."""
    return _DataParallel(job, n).run()

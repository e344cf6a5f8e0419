"""Execution back ends: where the real ClientApp computations of a round run.

The grid hands a back end the messages that reached their devices; the back end returns,
for each, the reply and the work the computation performed (FLOPs, peak memory). The
simulated outcome depends only on those, never on which back end ran them or in what order:
every job carries its own torch seed, and every back end runs it with the same number of
torch threads (`torch_threads`), so that float results do not depend on how many cores the
process that happens to run the job has (torch splits some reductions by thread).

`LocalBackend` runs the jobs one after another in this process; `sim.ray_backend.RayBackend`
(the only module that imports Ray) runs them in parallel on Ray workers. `make_backend`
builds the one a config asks for.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from flwr.app import Context, Message

from sim.meter import PROCESS_COSTS, WorkMeter

__all__ = ["BACKENDS", "Execution", "LocalBackend", "make_backend", "run_job", "torch_threads"]

BACKENDS = ("local", "ray")


@dataclass
class Execution:
    """The outcome of running a ClientApp on one message for real."""

    reply: Message | None
    flops: int
    peak_bytes: int
    error: str = ""


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run with `n` torch intra-op threads (None: leave them as they are), restored after."""
    before = torch.get_num_threads()
    if n is None or n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_job(app, message: Message, context: Context, torch_seed: int, cost_cache: dict,
            optimizer_copies: int) -> Execution:
    """Run `app` on one message under its own torch seed and a work meter (both back ends)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(torch_seed)
        meter = WorkMeter(cost_cache, optimizer_copies)
        try:
            with meter:
                reply = app(message, context)
        except Exception as exc:  # a failing ClientApp is an error reply, as in Flower
            return Execution(None, meter.flops, meter.peak_bytes, f"{type(exc).__name__}: {exc}")
    return Execution(reply, meter.flops, meter.peak_bytes)


class LocalBackend:
    """Runs ClientApps one after another in this process; FLOP figures cached per shape, for
    the whole process (`sim.meter.PROCESS_COSTS`)."""

    name = "local"

    def __init__(self, optimizer_copies: int = 1, torch_threads: int | None = None, vectorize: bool = False):
        self.optimizer_copies = optimizer_copies
        self.torch_threads = torch_threads
        self.vectorize = vectorize  # workload.vectorize: the built-in app's train jobs of a round trained together
        self._cost_cache = PROCESS_COSTS  # FLOP counts are the same for every job of the process

    def execute(self, app, jobs: list[tuple[Message, Context, int]]) -> list[Execution]:
        with torch_threads(self.torch_threads):
            if self.vectorize:  # the built-in ClientApp's clients trained together
                from sim.vectorize import execute

                return execute(app, jobs, self._cost_cache, self.optimizer_copies)
            return [run_job(app, *job, self._cost_cache, self.optimizer_copies) for job in jobs]

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def make_backend(cfg):
    """The back end `cfg.backend` names, ready to run (a Ray one has joined or started Ray)."""
    copies, threads = cfg.workload.optimizer_copies, cfg.torch_threads
    if cfg.backend == "ray":
        from sim.ray_backend import RayBackend  # Ray is imported there only, and only when asked

        r = cfg.ray
        return RayBackend(copies, threads, address=r.address, num_cpus=r.num_cpus, num_workers=r.num_workers)
    return LocalBackend(copies, threads, vectorize=cfg.workload.vectorize)

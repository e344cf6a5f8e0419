"""Execution back ends: where the real computations of a simulated step run.

Two operations. `execute(app, jobs)` (the federated workload): the grid hands a back end the
messages that reached their devices; the back end returns, for each, the reply and the work the
computation performed (FLOPs, peak memory). `map(fn, calls, seeds)` (every other workload):
`[fn(*args) for args in calls]`, the independent computations of a step (models to train,
simulated runs, evaluations), results in the order of `calls`.

The simulated outcome depends only on what the computations return, never on which back end
ran them or in what order: every job or call carries its own torch seed (torch's global
generator is forked around it, so nothing carries over from one call to the next), and every
back end runs it with the same number of torch threads (`torch_threads`), so that float results
do not depend on how many cores the process that happens to run it has (torch splits some
reductions by thread). The torch device (`torch_device`) travels with each job or call (in the
built-in ClientApp's `FederatedTask`, in a call's arguments), so any back end's process computes
where the job asked. A call may run in another process: `fn` must be a module-level function
(pickled by reference), its arguments and result picklable (tensors, state dicts, models, small
records), and it must return everything it produces (what it changes in its arguments stays
where it ran).

`Backend` is the protocol every back end follows; this module holds what they share (the
seeded, metered run of one job or call). `sim.backends.local.LocalBackend` runs them one after
another in this process, `sim.backends.vectorized.VectorizedBackend` trains the built-in
ClientApp's clients of a step together, `sim.backends.processes.ProcessBackend` runs them in
parallel on worker processes forked from this one, `sim.backends.ray.RayBackend` (the only module
that imports Ray) runs them in parallel on Ray workers. `sim.backends.make_backend` builds the one a
config asks for.
"""

from __future__ import annotations

import contextlib
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from flwr.app import Context, Message

from sim.faults import BackendFailure
from sim.meter import WorkMeter
from sim.torch_internals import defer_dynamo

__all__ = [
    "BACKENDS",
    "Backend",
    "BackendFailure",
    "Done",
    "Execution",
    "Job",
    "call_seeds",
    "report",
    "run_call",
    "run_job",
    "torch_seeded",
    "torch_threads",
]

BACKENDS = ("local", "processes", "ray")

Job = tuple  # (Message, Context, torch seed): one message that reached its device
Done = Callable[[int, "Execution"], None]  # told of each job of a step as it finishes (`Backend.execute`)


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


@contextlib.contextmanager
def torch_seeded(seed: int) -> Iterator[None]:
    """torch's global generator seeded with `seed` inside, its state restored after.

    The CPU generator is seeded directly: `torch.manual_seed` also queues a lazy seed for every
    accelerator torch knows, recording a stack trace each time (once per client). A
    CUDA already in use (a user's ClientApp on a GPU) is seeded as well."""
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        if torch.cuda.is_initialized():
            torch.cuda.manual_seed_all(seed)
        yield


@contextlib.contextmanager
def python_memory(enabled: bool) -> Iterator[list[int]]:
    """The peak of the memory allocated through Python's allocators inside (numpy arrays, Python
    objects, serialised payloads: `tracemalloc`; torch's tensors are not among them, the work
    meter counts those), rounded up to 4 KiB pages, in the list it yields; [0] when not `enabled`."""
    peak = [0]
    if not enabled:
        yield peak
        return
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    try:
        yield peak
    finally:
        now, top = tracemalloc.get_traced_memory()
        # what the step held at its peak and let go of: what it keeps (a data set cached for the
        # process, warmed-up library state) is the process's, not this step's work
        peak[0] = -(-max(top - max(now, base), 0) // 65536) * 65536
        if started:
            tracemalloc.stop()


def run_job(
    app, message: Message, context: Context, torch_seed: int, cost_cache: dict, optimizer_copies: int
) -> Execution:
    """Run `app` on one message under its own torch seed and a work meter (every back end). A
    user's ClientApp (unless marked `python_memory = False`) may hold memory outside torch: its Python
    allocations are traced too, and their peak added to the torch peak (an upper bound: the two
    peaks need not coincide)."""
    defer_dynamo()  # in whichever process runs it (a worker, a Ray actor or task): `sim.torch_internals`
    with torch_seeded(torch_seed), python_memory(getattr(app, "python_memory", True)) as outside:
        meter = WorkMeter(cost_cache, optimizer_copies)
        try:
            with meter:
                reply = app(message, context)
        except Exception as exc:  # a failing ClientApp is an error reply, as in Flower
            reply, error = None, f"{type(exc).__name__}: {exc}"
        else:
            error = ""
    return Execution(reply, meter.flops, meter.peak_bytes + outside[0], error)


def report(done: Done | None, runs: list[Execution]) -> list[Execution]:
    """`runs`, each told to `done` first, in order: a back end that finishes a step all at once."""
    if done is not None:
        for i, ex in enumerate(runs):
            done(i, ex)
    return runs


def call_seeds(calls: Sequence[tuple], seeds: Sequence[int] | None) -> list[int]:
    """The torch seed of each call: `seeds` (one per call), or 0 for every call."""
    if seeds is None:
        return [0] * len(calls)
    if len(seeds) != len(calls):
        raise ValueError(f"map: {len(seeds)} seeds for {len(calls)} calls")
    return [int(s) for s in seeds]


def run_call(fn: Callable, args: tuple, torch_seed: int):
    """`fn(*args)` under its own torch seed; torch's global generator is restored after (both back ends)."""
    defer_dynamo()  # as `run_job`
    with torch_seeded(torch_seed):
        return fn(*args)


class Backend(Protocol):
    """What the engine needs of a back end. Results never depend on which one ran them."""

    name: str

    def execute(self, app, jobs: Sequence[Job], done: Done | None = None) -> list[Execution]:
        """Run `app` on each job's message (its own torch seed, under a work meter); in job order.
        What an app keeps in a job's `Context.state` is there afterwards.

        `done(i, execution)`, where given, is called for every job in job order, as soon as that
        job and every one before it have finished (its context state in place) and before
        `execute` returns: a caller's work on the first replies (the journal, the uplinks) then
        overlaps the computation of the rest where the back end runs them in parallel. An
        exception from `done` ends the step: the back end stops what it runs, and it propagates."""
        ...

    def map(self, fn: Callable, calls: Sequence[tuple], seeds: Sequence[int] | None = None) -> list:
        """`[fn(*args) for args in calls]`, each call under its torch seed (default 0), results in order."""
        ...

    def close(self) -> None:
        """Release what the back end holds (processes, a Ray instance it started)."""
        ...

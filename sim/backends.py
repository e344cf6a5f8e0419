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
reductions by thread). A call may run in another process: `fn` must be a module-level function
(pickled by reference), its arguments and result picklable (tensors, state dicts, models, small
records), and it must return everything it produces (what it changes in its arguments stays
where it ran).

`LocalBackend` runs them one after another in this process; `sim.ray_backend.RayBackend`
(the only module that imports Ray) runs them in parallel on Ray workers. `make_backend`
builds the one a config asks for; `make_executor` the same for a workload that only maps,
started at its first call.
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from flwr.app import Context, Message

from sim.meter import PROCESS_COSTS, WorkMeter

__all__ = ["BACKENDS", "Execution", "Executor", "LocalBackend", "call_seeds", "make_backend", "make_executor", "run_call",
           "run_job", "torch_seeded", "torch_threads"]

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


@contextlib.contextmanager
def torch_seeded(seed: int) -> Iterator[None]:
    """torch's global generator seeded with `seed` inside, its state restored after.

    The CPU generator is seeded directly: `torch.manual_seed` also queues a lazy seed for every
    accelerator torch knows, recording a stack trace each time (~0.2 ms, once per client). A
    CUDA already in use (a user's ClientApp on a GPU) is seeded as well."""
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        if torch.cuda.is_initialized():
            torch.cuda.manual_seed_all(seed)
        yield


def run_job(app, message: Message, context: Context, torch_seed: int, cost_cache: dict,
            optimizer_copies: int) -> Execution:
    """Run `app` on one message under its own torch seed and a work meter (both back ends)."""
    with torch_seeded(torch_seed):
        meter = WorkMeter(cost_cache, optimizer_copies)
        try:
            with meter:
                reply = app(message, context)
        except Exception as exc:  # a failing ClientApp is an error reply, as in Flower
            return Execution(None, meter.flops, meter.peak_bytes, f"{type(exc).__name__}: {exc}")
    return Execution(reply, meter.flops, meter.peak_bytes)


def call_seeds(calls: Sequence[tuple], seeds: Sequence[int] | None) -> list[int]:
    """The torch seed of each call: `seeds` (one per call), or 0 for every call."""
    if seeds is None:
        return [0] * len(calls)
    if len(seeds) != len(calls):
        raise ValueError(f"map: {len(seeds)} seeds for {len(calls)} calls")
    return [int(s) for s in seeds]


def run_call(fn: Callable, args: tuple, torch_seed: int):
    """`fn(*args)` under its own torch seed; torch's global generator is restored after (both back ends)."""
    with torch_seeded(torch_seed):
        return fn(*args)


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

    def map(self, fn: Callable, calls: Sequence[tuple], seeds: Sequence[int] | None = None) -> list:
        """`[fn(*args) for args in calls]`, one after another, each under its seed (default 0)."""
        seeds = call_seeds(calls, seeds)
        with torch_threads(self.torch_threads):
            return [run_call(fn, tuple(args), seed) for args, seed in zip(calls, seeds)]

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def make_backend(cfg, actors: bool = True):
    """The back end `cfg.backend` names, ready to run (a Ray one has joined or started Ray and,
    with `actors`, started its pool of actors for `execute`; without, `map` runs Ray tasks)."""
    copies, threads = cfg.workload.optimizer_copies, cfg.torch_threads
    if cfg.backend == "ray":
        from sim.ray_backend import RayBackend  # Ray is imported there only, and only when asked

        r = cfg.ray
        return RayBackend(copies, threads, address=r.address, num_cpus=r.num_cpus, num_workers=r.num_workers,
                          actors=actors)
    return LocalBackend(copies, threads, vectorize=cfg.workload.vectorize)


def _timed(fn: Callable, *args) -> tuple:
    """`fn(*args)`, and its wall and CPU seconds where it ran (for `Executor.maps`)."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, round(time.perf_counter() - t0, 3), round(time.process_time() - c0, 3)


class Executor:
    """The back end a workload other than the federated one maps its independent computations
    on (`map`, as `LocalBackend.map`), built from `cfg` at the first call that has work, so a
    job with nothing to compute (a NoNN job whose models all come from the model cache) never
    starts Ray; closed with the executor.
    For wallclock.json: `start_s`, the wall seconds that start took; `maps`, each map's number
    of calls, its wall seconds, and each call's own wall seconds (their sum over the map's: how
    many ran at once, on average) and CPU seconds (below the wall seconds: the call waited for
    a core that other processes held)."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.backend = None
        self.start_s = 0.0
        self.maps: list[dict] = []

    @property
    def name(self) -> str:
        return self.cfg.backend

    @property
    def torch_threads(self) -> int | None:
        return self.cfg.torch_threads

    def map(self, fn: Callable, calls: Sequence[tuple], seeds: Sequence[int] | None = None) -> list:
        if not calls:
            return []
        if self.backend is None:
            t0 = time.perf_counter()
            self.backend = make_backend(self.cfg, actors=False)
            self.start_s = round(time.perf_counter() - t0, 3)
        t0 = time.perf_counter()
        out = self.backend.map(_timed, [(fn, *args) for args in calls], seeds)
        self.maps.append({"calls": len(calls), "wall_s": round(time.perf_counter() - t0, 3),
                          "call_s": [wall for _, wall, _ in out], "call_cpu_s": [cpu for _, _, cpu in out]})
        return [result for result, _, _ in out]

    def timings(self) -> dict:
        """What wallclock.json reports of the back end."""
        return {"backend": self.name, "backend_start_s": self.start_s, "maps": self.maps}

    def close(self) -> None:
        if self.backend is not None:
            self.backend.close()
        self.backend = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def make_executor(cfg) -> Executor:
    """The executor of a NoNN, NAIR or mcPipe job (`cfg.backend`, `cfg.ray`, `cfg.torch_threads`)."""
    return Executor(cfg)

"""Execution back ends: where the real computations of a simulated step run (see `base`).

`make_backend(cfg)` builds the one a config asks for; `Executor` is the back end a workload
other than the federated one maps its independent computations on, started at its first call.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from sim.backends.base import BACKENDS, Backend, BackendFailure, Execution, torch_seeded, torch_threads
from sim.backends.local import LocalBackend

__all__ = [
    "BACKENDS",
    "Backend",
    "BackendFailure",
    "Execution",
    "Executor",
    "LocalBackend",
    "make_backend",
    "make_executor",
    "torch_seeded",
    "torch_threads",
]


def make_backend(cfg, actors: bool = True, task=None) -> Backend:
    """The back end `cfg.backend` names, ready to run (a Ray one has joined or started Ray and,
    with `actors`, started its pool of actors; without, `map` runs Ray tasks; a `processes` one
    forks its workers at its first step). With `task` (a
    `FederatedTask`), the local back end trains that task's clients of a step together."""
    copies, threads = getattr(cfg.workload, "optimizer_copies", 1), cfg.torch_threads
    if cfg.backend == "processes":
        from sim.backends.processes import ProcessBackend

        return ProcessBackend(copies, threads, workers=cfg.processes)
    if cfg.backend == "ray":
        from sim.backends.ray import RayBackend  # Ray is imported there only, and only when asked

        r = cfg.ray
        return RayBackend(
            copies, threads, address=r.address, num_cpus=r.num_cpus, num_workers=r.num_workers, actors=actors
        )
    if task is not None:
        from sim.backends.vectorized import VectorizedBackend  # torch.func: only when asked

        return VectorizedBackend(task, copies, threads)
    return LocalBackend(copies, threads)


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

    @property
    def torch_device(self) -> str:
        """Where the calls compute (`torch_device`); each call carries it (it may run in another process)."""
        return self.cfg.torch_device

    def announce(self, text: str) -> None:
        """A phase of the job's computation, as a plain line on stderr (with `progress`)."""
        if self.cfg.progress:
            import sys

            print(f"{self.cfg.workload.name}: {text}", file=sys.stderr, flush=True)

    def map(self, fn: Callable, calls: Sequence[tuple], seeds: Sequence[int] | None = None) -> list:
        if not calls:
            return []
        if self.backend is None:
            t0 = time.perf_counter()
            self.backend = make_backend(self.cfg, actors=False)
            self.start_s = round(time.perf_counter() - t0, 3)
        t0 = time.perf_counter()
        out = self.backend.map(_timed, [(fn, *args) for args in calls], seeds)
        self.maps.append(
            {
                "calls": len(calls),
                "wall_s": round(time.perf_counter() - t0, 3),
                "call_s": [wall for _, wall, _ in out],
                "call_cpu_s": [cpu for _, _, cpu in out],
            }
        )
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
    """The executor of a NoNN, NAIR or mcPipe job (`cfg.backend`, `cfg.ray`, `cfg.processes`,
    `cfg.torch_threads`, `cfg.torch_device`)."""
    return Executor(cfg)

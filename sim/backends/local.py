"""The local back end: a step's computations one after another, in this process."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sim.backends.base import Done, Execution, Job, call_seeds, report, run_call, run_job, torch_threads
from sim.meter import PROCESS_COSTS

__all__ = ["LocalBackend"]


class LocalBackend:
    """Runs ClientApps one after another in this process; FLOP figures cached per shape, for
    the whole process (`sim.meter.PROCESS_COSTS`)."""

    name = "local"

    def __init__(self, optimizer_copies: int = 1, torch_threads: int | None = None):
        self.optimizer_copies = optimizer_copies
        self.torch_threads = torch_threads
        self._cost_cache = PROCESS_COSTS  # FLOP counts are the same for every job of the process

    def execute(self, app, jobs: Sequence[Job], done: Done | None = None) -> list[Execution]:
        with torch_threads(self.torch_threads):
            runs = [run_job(app, *job, self._cost_cache, self.optimizer_copies) for job in jobs]
        return report(done, runs)  # one after another here: nothing to overlap

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

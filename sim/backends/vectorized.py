"""`workload.vectorize`: a local back end that runs a round's jobs of the built-in ClientApp with
the sampled clients' training done together (`experiments.federated.vectorized`: torch.func.vmap over
their stacked weights; docs/scale.md, section 6).

Only the wall-clock computation is batched. Each client is charged what the ClientApp run under
the work meter would be charged: the FLOPs and peak memory of one top-level call per step of its
own, with its own batch size, from the back end's FLOP cache (`WorkMeter.charge`); its reply is
the ClientApp's, so its bytes on the link, its compute time and its energy are the same. Jobs the
batched path does not train, and a group whose batched training raises, run through the ClientApp
as on the per-client path.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch

from experiments.federated.task import FederatedTask
from experiments.federated.vectorized import group_jobs, train_messages
from sim.backends.base import Done, Execution, Job, report, run_job, torch_threads
from sim.backends.local import LocalBackend
from sim.meter import WorkMeter

__all__ = ["STACK_BUDGET_BYTES", "VectorizedBackend", "execute"]

# clients trained in one stack at most: their peak training footprints (the meter's, per
# client) summed stay under this, so a round of many clients of a big model goes in chunks
STACK_BUDGET_BYTES = 2 << 30


class VectorizedBackend(LocalBackend):
    """The local back end, with the train jobs of the built-in ClientApp of `task` trained together."""

    def __init__(self, task: FederatedTask, optimizer_copies: int = 1, torch_threads: int | None = None):
        super().__init__(optimizer_copies, torch_threads)
        self.task = task

    def execute(self, app, jobs: Sequence[Job], done: Done | None = None) -> list[Execution]:
        with torch_threads(self.torch_threads):
            runs = execute(self.task, app, list(jobs), self._cost_cache, self.optimizer_copies)
        return report(done, runs)


def execute(
    task: FederatedTask, app, jobs: list, cost_cache: dict, optimizer_copies: int, mode: str = "prefix"
) -> list[Execution]:
    """`LocalBackend.execute` for the built-in ClientApp of `task`."""
    out: list[Execution | None] = [None] * len(jobs)
    groups, others = group_jobs(task, jobs)
    for i in others:
        out[i] = run_job(app, *jobs[i], cost_cache, optimizer_copies)
    if not groups:
        return out
    model = task.build_model()
    example = task.data.x_train
    with torch.enable_grad():  # the charged calls are training calls, as in the ClientApp
        per_stack = max(
            1,
            STACK_BUDGET_BYTES
            // max(_charged(model, example, [task.batch_size], cost_cache, optimizer_copies).peak_bytes, 1),
        )
        for (lr, objective), members in groups.items():
            for lo in range(0, len(members), per_stack):
                chunk = members[lo : lo + per_stack]
                try:
                    done = train_messages(task, model, [jobs[i] for i in chunk], lr, objective, mode)
                except Exception as exc:  # each client then runs (and fails, if it does) on its own
                    warnings.warn(
                        f"workload.vectorize: training {len(chunk)} clients together failed "
                        f"({type(exc).__name__}: {exc}); they ran one by one",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                    done = None
                for n, i in enumerate(chunk):
                    if done is None:
                        out[i] = run_job(app, *jobs[i], cost_cache, optimizer_copies)
                        continue
                    reply, batch_sizes = done[n]
                    meter = _charged(model, example, batch_sizes, cost_cache, optimizer_copies)
                    out[i] = Execution(reply, meter.flops, meter.peak_bytes)
    return out


def _charged(
    model, example: torch.Tensor, batch_sizes: list[int], cost_cache: dict, optimizer_copies: int
) -> WorkMeter:
    """A meter charged one top-level training call of `model` per batch size, as the ClientApp's
    steps are under `run_job`'s meter."""
    meter = WorkMeter(cost_cache, optimizer_copies)
    for b in batch_sizes:
        meter.charge(model, (example[:b],))
    return meter

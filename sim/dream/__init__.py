"""Dream Distillation (`workload=dream`): compress the NoNN teacher into students without its
training data, from metadata of its activations, on the simulated network (docs/dream.md).

`settings.py`: the `workload.*` schema and its validation; `timeline.py`: the phases on the
clock (the metadata's transfer, the server's generation and distillations); `job.py`: the job;
this module registers it (`sim.jobs`).
"""

from __future__ import annotations

from sim.config import Config, Workload
from sim.dream.settings import DreamSettings, validate

__all__ = ["WORKLOAD"]


def _run(cfg: Config, out_dir, *, in_sweep: bool = False):
    from sim.dream.job import run  # torch: imported when a dream job runs

    return run(cfg, out_dir, in_sweep=in_sweep)


WORKLOAD = Workload("dream", DreamSettings, frozenset({"channel", "dataset"}), validate, _run)

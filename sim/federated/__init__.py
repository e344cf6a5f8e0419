"""The federated workload: Flower strategies and ClientApps over the simulated fleet (`workload=federated`).

`settings.py`: the `workload.*` schema and its validation; `job.py`: the job (real computation
from `experiments.federated` and its timeline on the clock); this module registers it (`sim.jobs`).
"""

from __future__ import annotations

from sim.config import Config, Workload
from sim.federated.settings import FederatedSettings, validate

__all__ = ["WORKLOAD"]


def _run(cfg: Config, out_dir, *, in_sweep: bool = False):
    from sim.federated.job import run  # torch and Flower: imported when a federated job runs

    return run(cfg, out_dir, in_sweep=in_sweep)


WORKLOAD = Workload(
    "federated", FederatedSettings, frozenset({"fleet", "channel", "strategy", "dataset", "compare"}), validate, _run
)

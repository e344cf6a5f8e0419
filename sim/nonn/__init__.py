"""The NoNN workload: a teacher split into disjoint students run across devices (`workload=nonn`).

`settings.py`: the `workload.*` schema and its validation; `job.py`: the job (trains the models
with `experiments.nonn`, simulates, writes the reports); `fleet.py`: the simulated deployments;
`timeline.py`: the SimPy processes of one inference; `calibration.py`: the paper's deployments;
`report.py`: the summary, plots and printout. This module registers the workload (`sim.jobs`).
"""

from __future__ import annotations

from sim.config import Config, Workload
from sim.nonn.settings import NonnSettings, validate

__all__ = ["WORKLOAD"]


def _run(cfg: Config, out_dir, *, in_sweep: bool = False):
    from sim.nonn.job import run  # torch, networkx: imported when a NoNN job runs

    return run(cfg, out_dir, in_sweep=in_sweep)


WORKLOAD = Workload("nonn", NonnSettings, frozenset({"channel", "dataset"}), validate, _run)

"""The mcPipe workload: model-parallel pipeline training (`workload=mcpipe`).

`settings.py`: the `workload.*` schema and its validation; `build.py`: what every run of a model
shares (from `experiments.mcpipe`, the real computation); `timeline.py`: each run's SimPy
processes; `report.py`: its tables and plots; `job.py`: the job (build, simulate every run,
write the reports); this module registers it (`sim.jobs`).
"""

from __future__ import annotations

from sim.config import Config, Workload
from sim.mcpipe.settings import McpipeSettings, validate

__all__ = ["WORKLOAD"]


def _run(cfg: Config, out_dir, *, in_sweep: bool = False):
    from sim.mcpipe.job import run  # torch: imported when an mcPipe job runs

    return run(cfg, out_dir, in_sweep=in_sweep)


WORKLOAD = Workload("mcpipe", McpipeSettings, frozenset({"channel", "dataset"}), validate, _run)

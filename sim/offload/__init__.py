"""The offload example (`workload=offload`): should a sensor classify an image itself or send it
to the edge server? The model a new workload copies (docs/extending.md).

`settings.py`: the `workload.*` schema and its validation; `timeline.py`: the SimPy processes;
`job.py`: the job (real computation from `experiments.offload`, then the timeline); this module
registers it (`sim.jobs`).
"""

from __future__ import annotations

from sim.config import Config, Workload
from sim.offload.settings import OffloadSettings, validate

__all__ = ["WORKLOAD"]


def _run(cfg: Config, out_dir, *, in_sweep: bool = False):
    from sim.offload.job import run  # torch: imported when an offload job runs

    return run(cfg, out_dir, in_sweep=in_sweep)


WORKLOAD = Workload("offload", OffloadSettings, frozenset({"channel"}), validate, _run)

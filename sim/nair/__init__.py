"""The NAIR workload: head/tail split inference over a narrow, lossy link (`workload=nair`).

`settings.py`: the `workload.*` schema and its validation; `job.py`: the job (builds the models,
simulates every method, writes the reports); `timeline.py`: the SimPy processes of the device and
the server on the method's network; `methods.py`: one method's link and real inference;
`report.py`: the tables and plots. The real computation is `experiments.nair`. This module
registers the workload (`sim.jobs`).
"""

from __future__ import annotations

from sim.config import Config, Workload
from sim.nair.settings import NairSettings, validate

__all__ = ["WORKLOAD"]


def _run(cfg: Config, out_dir, *, in_sweep: bool = False):
    from sim.nair.job import run  # torch, Pillow: imported when a NAIR job runs

    return run(cfg, out_dir, in_sweep=in_sweep)


WORKLOAD = Workload("nair", NairSettings, frozenset({"channel", "dataset"}), validate, _run)

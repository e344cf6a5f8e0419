"""`hydra/launcher=edgesim_ray`: a multirun's jobs as parallel Ray tasks, one CPU each.

    python -m sim -m hydra/launcher=edgesim_ray +experiment=fedmax_noniid channel.ber=0,1e-4
    python -m sim -m hydra/launcher=edgesim_ray hydra.launcher.address=auto ...   # an existing cluster

Why our own and not Hydra's `hydra-ray-launcher` plugin: that plugin (1.2.2) requires
`cloudpickle<3` and, through `ray[default]`, a stack of extra packages; installed beside flwr
1.41 it drags `packaging` to 26, which flwr refuses (see docs/scale.md). What a multirun needs
from Ray fits in this file: it does what Hydra's basic launcher does (one sweep config per job,
`run_job` with the same job numbers and folders), except that each job runs as a Ray task and
all of them at once; Hydra's callbacks (the sweep's comparison.csv) then run in this process,
over the same job folders, as after a sequential sweep. Each job fixes its torch thread count
(`torch_threads`), so its CSVs do not depend on the process it ran in.

Ray itself is imported only by `sim.backends.ray`. On a cluster, the sweep folder must be on a
file system every node shares (each job writes its own folder there).
"""

import contextlib
import io
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

log = logging.getLogger(__name__)


@dataclass
class EdgesimRayLauncherConf:
    _target_: str = "hydra_plugins.edgesim_ray_launcher.ray_launcher.EdgesimRayLauncher"
    address: Optional[str] = None  # null: start a local Ray; 'auto', 'HOST:PORT', 'ray://HOST:10001': join a cluster
    num_cpus: Optional[int] = None  # CPUs of the local instance (null = all); ignored with address
    cpus_per_job: float = 1.0  # Ray CPUs each job reserves (jobs run with torch_threads threads)


ConfigStore.instance().store(
    group="hydra/launcher", name="edgesim_ray", node=EdgesimRayLauncherConf, provider="edgesim"
)


def _run_one(
    hydra_context: HydraContext, task_function: TaskFunction, sweep_config: DictConfig, singleton_state: dict
) -> tuple[Optional[JobReturn], Optional[int], str]:
    """One job, in a Ray worker: Hydra's globals as in the launching process, then `run_job`.
    Returns (the job's return, its exit code if it exited, what it printed to stderr)."""
    setup_globals()
    Singleton.set_state(singleton_state)
    HydraConfig.instance().set_config(sweep_config)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            ret = run_job(
                hydra_context=hydra_context,
                task_function=task_function,
                config=sweep_config,
                job_dir_key="hydra.sweep.dir",
                job_subdir_key="hydra.sweep.subdir",
            )
        return ret, None, err.getvalue()
    except SystemExit as exc:  # the job's own exit (a bad setting: `error: ...`, exit 2)
        return None, int(exc.code) if isinstance(exc.code, int) else 1, err.getvalue()


class EdgesimRayLauncher(Launcher):
    def __init__(self, address: Optional[str] = None, num_cpus: Optional[int] = None, cpus_per_job: float = 1.0):
        self.address, self.num_cpus, self.cpus_per_job = address, num_cpus, cpus_per_job
        self.config: Optional[DictConfig] = None
        self.task_function: Optional[TaskFunction] = None
        self.hydra_context: Optional[HydraContext] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from sim.backends.ray import run_parallel, start_ray, stop_ray  # Ray lives there

        setup_globals()
        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        calls = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with open_dict(sweep_config):
                sweep_config.hydra.job.id = idx
                sweep_config.hydra.job.num = idx
            calls.append((self.hydra_context, self.task_function, sweep_config, Singleton.get_state()))
        started = start_ray(self.address, self.num_cpus)
        log.info(f"Launching {len(calls)} jobs on Ray")
        try:
            outcomes = run_parallel(_run_one, calls, num_cpus=self.cpus_per_job)
        finally:
            if started:
                stop_ray()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        for _, code, err in outcomes:
            if err:
                sys.stderr.write(err)
            if code is not None:  # as under the basic launcher: a failing job ends the sweep
                raise SystemExit(code)
        return [ret for ret, _, _ in outcomes]

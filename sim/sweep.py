"""A sweep's comparison (`SweepComparison`, the Hydra callback `sim/conf/config.yaml` registers):
comparison.csv over the finished jobs after each job and the plots and report.html after the
multirun; and the name of a job's folder (`job_dir`, the `edgesim_job` resolver of
`hydra.sweep.subdir`): its swept values, so that a rerun finds its finished jobs."""

from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from sim.console import faults_reported

__all__ = ["SETTING_COLUMNS", "SweepComparison", "job_dir", "sweep_jobs"]

SETTING_COLUMNS = (
    "strategy",
    "seed",
    "dataset",
    "partition",
    "model",
    "num_devices",
    "fleet_mix",
    "fraction_train",
    "deadline_s",
    "channel_model",
    "channel_mode",
    "channel_ber",
    "bandwidth_bps",
    "latency_s",
    "rounds",
)


def _swept(jobs: list[Path], named: set[str]) -> dict[str, dict[str, str]]:
    """Per job folder, `{override key: value}` for the overrides whose value differs between the
    sweep's jobs (from Hydra's `.hydra/overrides.yaml`) and that no summary column in `named`
    already gives (`channel.ber` is `channel_ber`): columns of the sweep's comparison, so a swept
    setting such as `strategy.params.buffer_size` is still there."""
    values: dict[str, dict[str, str]] = {}
    for job in jobs:
        path = job / ".hydra" / "overrides.yaml"
        if path.exists():
            pairs = (o.split("=", 1) for o in OmegaConf.load(path) if "=" in o)
            values[str(job)] = {k.lstrip("+~"): v for k, v in pairs}
    keys = {k for v in values.values() for k in v}
    varying = {k for k in keys if len({v.get(k) for v in values.values()}) > 1}
    varying = {k for k in varying if k.replace(".", "_") not in named and k.split(".")[-1] not in named}
    return {job: {k: v for k, v in kv.items() if k in varying} for job, kv in values.items()}


def job_dir(overrides: str, num) -> str:
    """A sweep job's folder: its swept overrides (`channel.ber=0.001,strategy=fedprox`), so that a
    rerun of the sweep finds each job's results by what it ran, not by its place in the order
    (`hydra.sweep.subdir`; the job number when nothing is swept, hashed when too long)."""
    import hashlib

    name = overrides.replace("/", "_") or str(num)
    if len(name) > 120:
        name = f"{name[:100]}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"
    return name


OmegaConf.register_new_resolver("edgesim_job", job_dir, replace=True)


def sweep_jobs(sweep_dir: Path) -> dict[int, Path]:
    """The finished jobs of a sweep, by Hydra's job number, wherever `hydra.sweep.subdir` put them."""
    jobs = {}
    for meta in sweep_dir.rglob(".hydra/hydra.yaml"):
        job = meta.parent.parent
        if (job / ".edgesim" / "complete").exists():
            jobs[int(OmegaConf.load(meta).hydra.job.num)] = job
    return dict(sorted(jobs.items()))


class SweepComparison(Callback):
    """comparison.csv over a sweep's finished jobs, in the sweep dir, after each job (so an
    interrupted sweep still has the comparison of those done); after the whole multirun, the
    accuracy plots and report.html too."""

    def on_job_end(self, config: DictConfig, job_return, **kwargs) -> None:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            with faults_reported():
                self.compare(Path(config.hydra.sweep.dir), plots=False)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        with faults_reported():
            self.compare(Path(config.hydra.sweep.dir), plots=config.get("plots", True))

    def compare(self, sweep_dir: Path, plots: bool) -> None:
        import pandas as pd

        from sim.html import write_sweep_report
        from sim.report import plot_accuracy, write_csv

        if not sweep_dir.is_dir():
            return
        numbered = sweep_jobs(sweep_dir)
        jobs = list(numbered.values())
        summaries, rounds = [], []
        paths = [p for job in jobs for p in job.rglob("summary.csv")]
        named = set(pd.read_csv(paths[0], nrows=0).columns) if paths else set()
        swept = _swept(jobs, named)  # each job's value of every override that differs between jobs
        for num, job in numbered.items():
            for path in sorted(job.rglob("summary.csv")):
                s = pd.read_csv(path).assign(job=num, **swept.get(str(job), {}))
                summaries.append(s)
                r = path.with_name("rounds.csv")
                if r.exists():
                    keys = [*SETTING_COLUMNS, *swept.get(str(job), {})]
                    values = {k: s[k].iloc[0] for k in keys if k in s}
                    rounds.append(pd.read_csv(r).assign(job=num, **values))
        if not summaries:
            return
        table = pd.concat(summaries, ignore_index=True)
        first = ["job", *dict.fromkeys(k for values in swept.values() for k in values)]
        table = table[first + [c for c in table.columns if c not in first]]
        write_csv(table, sweep_dir / "comparison.csv")
        if not plots:
            return
        varying = [k for k in [*SETTING_COLUMNS, *first[1:]] if k in table and table[k].nunique(dropna=False) > 1]
        varying = list(dict.fromkeys(varying))
        if rounds:
            labels = varying or ["strategy"]
            plot_accuracy(
                pd.concat(rounds, ignore_index=True),
                labels,
                sweep_dir,
                title=f"accuracy across the sweep of {len(jobs)} jobs (by {', '.join(labels)})",
                line_keys=["job", *labels],
            )
        write_sweep_report(sweep_dir, jobs)
        print(f"sweep of {len(jobs)} jobs: {sweep_dir.resolve()} (comparison.csv, report.html)", flush=True)

"""mcPipe (issue 5): model-parallel pipeline training on simulated memory-constrained devices.

Every schedule trains the real weights of the same model from the same initial weights on the
same microbatch stream:

- local: worker 0 trains the whole model alone (it holds the data);
- data_parallel: every worker trains the whole model on its share; after each step the
  master averages the weights and sends them back (weights cross the links every step);
- pipedream: the layers split into N stages, 1F1B with weight stashing;
- mcpipe: the same schedule with one stored weight version plus (activation, error) pairs,
  later versions rebuilt on demand (paper section IV-C);
- greedy: the same schedule with the latest weights only (GreedyUpdates).

The job builds what every run of a model shares (`build`), runs every model x N x schedule
on its own clock (`timeline`) through the back end's executor, and writes the tables and
plots (`report`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from sim.backends import make_executor
from sim.config import Config
from sim.mcpipe.build import Job, prepare
from sim.mcpipe.report import (
    RunResult,
    accuracy_time_s,
    plot_curves,
    plot_memory,
    progress_line,
    tables,
    write_timelines,
)
from sim.mcpipe.timeline import simulate
from sim.report import write_csv, write_csvs, write_json

__all__ = ["run", "run_all"]


def _runs(cfg: Config, jobs: list[Job]) -> dict[tuple[str, str, int], tuple[Job, str, int]]:
    """Every distinct run by (model, schedule, workers): the local run does not depend on N,
    so it is there once per model."""
    calls: dict[tuple[str, str, int], tuple[Job, str, int]] = {}
    for job in jobs:
        for n in cfg.workload.workers:
            for schedule in cfg.workload.schedules:
                size = 1 if schedule == "local" else n
                calls.setdefault((job.model.name, schedule, size), (job, schedule, size))
    return calls


def run_all(cfg: Config, jobs: list[Job], executor) -> tuple[list[RunResult], dict[str, float]]:
    """Every model x pipeline size x schedule (local shown beside every N), and each run's wall
    seconds (a repeated local run: 0).

    Each run is an independent real training with its own SimPy clock, its own copy of the
    model's initial weights and its own link streams (keyed by model, N, schedule): all of them
    go to `executor.map` at once (in parallel on `backend=ray`). The stages of one pipeline run
    are not independent (each waits for its neighbours' activations and errors on the shared
    clock), so a run is the unit."""
    calls = _runs(cfg, jobs)
    runs = executor.map(simulate, list(calls.values()))
    done = dict(zip(calls, zip(runs, executor.maps[-1]["call_s"])))  # each run with its wall seconds
    results: list[RunResult] = []
    wall: dict[str, float] = {}
    for job in jobs:
        local_shown = False
        for n in cfg.workload.workers:
            for schedule in cfg.workload.schedules:
                res, seconds = done[(job.model.name, schedule, 1 if schedule == "local" else n)]
                if schedule == "local":
                    res, seconds, local_shown = res.relabelled(n), 0.0 if local_shown else seconds, True
                wall[f"{job.model.name}/{n}/{schedule}"] = seconds
                results.append(res)
                if cfg.progress:
                    print(progress_line(res), flush=True)
    return results, wall


def run(cfg: Config, out_dir: Path | str, *, in_sweep: bool = False) -> pd.DataFrame:
    """Train every model under every schedule on every pipeline size; write curves.csv,
    memory.csv, layers.csv, summary.csv (and comparison.csv outside a sweep), the plots,
    trace.csv (the event order of every run) and each run's timeline*.csv (device states).
    Returns the summary rows. The settings are checked by `sim.jobs.validate` before."""
    out_dir = Path(out_dir)
    jobs = prepare(cfg)
    with make_executor(cfg) as executor:  # on `cfg.backend`, each call on `torch_threads` threads
        results, wall = run_all(cfg, jobs, executor)
    csvs = tables(jobs, results)
    write_csvs(out_dir, csvs)
    write_timelines(results, out_dir, cfg.plots)
    write_json({**executor.timings(), "wall_s_per_run": wall}, out_dir / "wallclock.json")
    summary = csvs["summary.csv"]
    if not in_sweep:
        write_csv(summary, out_dir / "comparison.csv")
    if cfg.plots:
        plot_curves(csvs["curves.csv"], out_dir, accuracy_time_s(cfg.workload))
        plot_memory(csvs["memory.csv"], out_dir)
    return summary

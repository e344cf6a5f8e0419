"""The NoNN job: teacher, knowledge partitioning, students and baselines (real, in
`experiments.nonn`), then distributed inference of the students and of the horizontally split
baseline on a simulated fleet, and the students' robustness to failed devices.

`run(cfg, out_dir)` writes partition.csv, students.csv, comparison.csv, inference.csv,
inference_devices.csv, robustness.csv, calibration.csv, beta_search.csv, summary.csv,
timeline.csv and the plots. Training is real (cached on disk, keyed by the settings that decide
the weights); the inference timelines (`sim.nonn.timeline`) are SimPy processes whose compute
times come from the FLOPs PyTorch counts on the real students and whose transfers carry the real
payload sizes over the network `cfg.channel` describes (`sim.net`: one system, one clock, per
scenario).
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

import pandas as pd

from channels import Link
from devices import CATALOGUE
from experiments.common.cache import cache_key
from experiments.common.data import Dataset, load_dataset
from experiments.dream.guard import RealImages
from experiments.nonn.pipeline import train_models
from experiments.nonn.tables import comparison_table, partition_table, students_table
from sim.backends import make_executor
from sim.config import Config, ConfigError
from sim.dream.dreams import dreams_of
from sim.net import TIMELINE_COLUMNS, build_link
from sim.nonn.calibration import calibration
from sim.nonn.fleet import TIMELINE_KEYS, simulate_fleet
from sim.nonn.report import plot, plot_timelines, print_summary, summary_table
from sim.nonn.system import network_systems
from sim.report import write_csvs, write_json, write_rows
from sim.seeding import stream

__all__ = ["run"]


def _link_and_data(cfg: Config) -> tuple[Link, Dataset]:
    """The link `channel.*` describes and the dataset, or the one-line error of a bad setting."""
    try:
        link = build_link(cfg.channel)
        data = load_dataset(cfg.dataset.name, path=cfg.dataset.path, seed=cfg.seed, num_samples=cfg.dataset.num_samples)
    except (FileNotFoundError, ValueError) as exc:
        raise ConfigError(str(exc).splitlines()[0]) from None
    h, w = data.input_shape[1:]
    if h < 4 or w < 4:
        raise ConfigError(
            f"dataset.name={cfg.dataset.name!r}: images of {h}x{w} are too small for a WRN (needs >= 4x4)"
        )
    return link, data


def _dreams(cfg: Config, data: Dataset):
    """`workload.data=dream`: the students learn from the teacher's dreams (`workload.dream.*`),
    labelled with the class each dream's target came from, never from the owner's images."""

    def student_data(teacher, teacher_key, x_train, y_train):
        real = RealImages(x_train, y_train)
        g, classes, shape = cfg.workload.dream, data.num_classes, tuple(data.input_shape)
        dr = dreams_of(
            g, cfg.seed, cfg.cache_dir, cfg.torch_threads, teacher, teacher_key, real, classes, shape, cfg.torch_device
        )
        return dr.images, dr.labels, cache_key(dr.stats, cfg.torch_threads)

    return student_data


def run(cfg: Config, out_dir, *, in_sweep: bool = False) -> pd.DataFrame:
    """The NoNN job; returns its summary row."""
    out_dir = Path(out_dir)
    n = cfg.workload
    link, data = _link_and_data(cfg)
    dataset_key = {"dataset": cfg.dataset.name, "path": cfg.dataset.path, "num_samples": cfg.dataset.num_samples}
    t0 = time.perf_counter()
    student_data = _dreams(cfg, data) if n.data == "dream" else None
    streams = functools.partial(stream, cfg.seed)
    with make_executor(cfg) as executor:  # the trainings on `cfg.backend` (Ray started only if one is not cached)
        tr = train_models(n, data, dataset_key, cfg.seed, streams, executor, cfg.cache_dir, student_data)
    wall = {"train_s": round(time.perf_counter() - t0, 3)}
    t0 = time.perf_counter()
    server = CATALOGUE[n.server]
    fleet = simulate_fleet(n, cfg.seed, tr, data, network_systems(cfg, server))
    wall["simulate_s"] = round(time.perf_counter() - t0, 3)

    comparison = comparison_table(tr, data, n.bytes_per_param, n.memory_budget_bytes, n.flop_budget)
    summary = summary_table(cfg, tr, comparison, fleet)
    tables = {
        "partition.csv": partition_table(tr.partition),
        "students.csv": students_table(tr),
        "comparison.csv": comparison,
        "inference.csv": fleet.scenarios,
        "inference_devices.csv": fleet.devices,
        "robustness.csv": fleet.robustness,
        "calibration.csv": calibration(link, server, cfg.seed, cfg.channel.medium) if n.calibrate else None,
        "beta_search.csv": tr.beta_search,
        "summary.csv": summary,
    }
    write_csvs(out_dir, {name: df for name, df in tables.items() if df is not None})
    write_rows(fleet.timeline, out_dir / "timeline.csv", TIMELINE_KEYS + TIMELINE_COLUMNS)
    write_json({**executor.timings(), "wall_s": wall}, out_dir / "wallclock.json")
    if cfg.plots:
        plot(out_dir, fleet.scenarios, fleet.robustness, len(tr.nonn.sizes))
        plot_timelines(out_dir, fleet, len(tr.nonn.sizes))
    if cfg.progress:
        print_summary(summary.iloc[0], comparison, out_dir)
    return summary

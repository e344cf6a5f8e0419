"""The reports of a NAIR job: its tables (table II, its long form, table III, the costs, the
summary), its plots and its progress lines."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from channels import Link
from devices import DeviceProfile
from experiments.common.metrics import count_params
from experiments.nair.slicing import SlicePlan
from experiments.nair.trained import NAIR_VARIANTS, Models
from sim.config import Config
from sim.nair.methods import METHODS, RAW_METHODS, MethodResult
from sim.nair.timeline import airtime_s
from sim.net import TIMELINE_COLUMNS
from sim.report import (
    channel_columns,
    frame,
    legend_below,
    plot_timeline,
    save_figure,
    write_csv,
    write_csvs,
    write_rows,
)

__all__ = [
    "Flops",
    "accuracy_tables",
    "cost_table",
    "plots",
    "say",
    "summary_table",
    "write_tables",
    "write_timelines",
]


class Flops(NamedTuple):
    """FLOPs of one inference: the head (on the device), the tail and the whole model (on the server)."""

    head: int
    tail: int
    full: int


def say(cfg: Config, text: str) -> None:
    """A progress line on stderr (`progress=true`)."""
    if cfg.progress:
        print(f"nair: {text}", file=sys.stderr, flush=True)


def _col(budget: float) -> str:
    return f"accuracy_at_{budget:g}_s"


def _tail_params(method: str, models: Models, k: int) -> tuple[int, int]:
    """(parameters of every tail the server keeps, how many tails) for `method`."""
    if method == "clio_mt":
        return sum(count_params(t) for t in models.clio_tails), len(models.clio_tails)
    if method in RAW_METHODS:
        return count_params(models.original), 1
    return count_params(models.nets[method].tail(k)), 1


def _airtime_s(cfg: Config, method: str, result: MethodResult, link: Link, shape: tuple) -> float:
    """Error-free airtime of everything `method` sends for one image (each slice its own message)."""
    n = cfg.workload
    if method in RAW_METHODS:
        return airtime_s(link, int(round(result.payload_bytes)))
    plan = SlicePlan(
        shape,
        n.channels_per_unit,
        n.bits_per_element,
        np.arange(shape[0] // n.channels_per_unit),
        method.startswith("nair"),
    )
    return sum(airtime_s(link, s) for s in plan.slice_sizes())


def cost_table(
    cfg: Config,
    models: Models,
    results: dict[str, MethodResult],
    link: Link,
    device: DeviceProfile,
    server: DeviceProfile,
    flops: Flops,
    shape: tuple,
) -> pd.DataFrame:
    """cost.csv: per method, the tails' parameters, the head's compute and energy on the device,
    the tail's compute on the server, and the error-free transfer of O_k (`shape`) or the image."""
    k = cfg.workload.split
    rows = []
    for method in METHODS:
        raw = method in RAW_METHODS
        tail_params, tails_n = _tail_params(method, models, k)
        airtime = _airtime_s(cfg, method, results[method], link, shape)
        head = 0 if raw else flops.head
        tail = flops.full if raw else flops.tail
        rows.append(
            {
                "method": method,
                "num_tails": tails_n,
                "tail_params": tail_params,
                "head_params": 0 if raw else count_params(models.nets[method].head(k)),
                "head_flops": head,
                "head_compute_s": device.compute_time_s(head),
                "head_energy_j": device.energy_j("compute", device.compute_time_s(head)),
                "tail_flops": tail,
                "tail_compute_s": server.compute_time_s(tail),
                "payload_bytes": results[method].payload_bytes,
                "transfer_s": airtime + link.latency_s,
                "transfer_energy_j": device.energy_j("transmit", airtime),
            }
        )
    return pd.DataFrame(rows)


def accuracy_tables(cfg: Config, results: dict[str, MethodResult]) -> tuple[pd.DataFrame, ...]:
    """latency.csv (one row per method and budget), table2.csv (table II: one row per method,
    one column per budget, and the overall accuracy) and ablation.csv (table III)."""
    latencies = cfg.workload.latencies_s
    latency = pd.concat([frame(results[m].rows) for m in METHODS], ignore_index=True)
    table = latency.pivot(index="method", columns="latency_budget_s", values="accuracy").reindex(list(METHODS))
    table.columns = [_col(b) for b in table.columns]
    table = table.reset_index()
    table["accuracy_overall"] = [results[m].overall for m in METHODS]
    low = _col(min(latencies))
    ablation = pd.DataFrame(
        [
            {
                "variant": v,
                "penalty": up,
                "importance_weight": uw,
                "low_latency_s": min(latencies),
                "low_latency_accuracy": float(table.loc[table.method == v, low].iloc[0]),
                "overall_accuracy": results[v].overall,
            }
            for v, (uw, up) in NAIR_VARIANTS.items()
        ]
    )
    return latency, table, ablation


def summary_table(cfg: Config, dataset: str, table: pd.DataFrame, cost: pd.DataFrame) -> pd.DataFrame:
    """summary.csv: table II with the job's settings in front and the main costs after (a
    sweep's comparison.csv gathers them)."""
    n, c = cfg.workload, cfg.channel
    settings = {
        "seed": cfg.seed,
        "dataset": dataset,
        "split": n.split,
        "channels_per_unit": n.channels_per_unit,
        "bits_per_element": n.bits_per_element,
        "input_size": n.input_size,
        "device": n.device,
        **channel_columns(c),
        "w_non": n.w_non,
        "penalty_weight": n.penalty_weight,
        "retune_epochs": n.retune_epochs,
    }
    summary = table.assign(**settings)
    summary = summary[["method", *settings, *[col for col in table.columns if col != "method"]]]
    return summary.merge(
        cost[["method", "num_tails", "tail_params", "head_flops", "payload_bytes", "transfer_s"]],
        on="method",
        how="left",
    )


def write_tables(out_dir: Path, tables: dict[str, pd.DataFrame], in_sweep: bool) -> None:
    """Every CSV, and comparison.csv (the summary) outside a sweep."""
    write_csvs(out_dir, tables)
    if not in_sweep:
        write_csv(tables["summary.csv"], out_dir / "comparison.csv")


def write_timelines(out_dir: Path, timelines: dict[str, list[dict]], with_plots: bool) -> None:
    """timeline_<method>.csv (device, state, start_s, end_s: each method is its own system, on its
    own clock; the first `TIMELINE_EPISODES` images) and, with plots, its Gantt chart."""
    for method, rows in timelines.items():
        write_rows(rows, out_dir / f"timeline_{method}.csv", TIMELINE_COLUMNS)
        if with_plots:
            plot_timeline(rows, out_dir / f"timeline_{method}.png", title=f"{method}: device and server states")


# what a plot's legend calls each method (the CSVs keep the short names)
METHOD_NAMES = {
    "original": "original model, zero-filled",
    "clio_mt": "CLIO, a tail per width",
    "clio_st": "CLIO, one tail",
    "nair_neither": "NAIR slicing, no re-tuning terms",
    "nair_penalty": "NAIR with the penalty only",
    "nair": "NAIR (eq. 11 weights + penalty)",
    "raw": "raw input, compressed",
}


def plots(out_dir: Path, latency: pd.DataFrame, corruption: pd.DataFrame, importance: pd.DataFrame, title: str) -> None:
    """accuracy_vs_latency.png, accuracy_vs_corruption.png (figure 5), importance.png (figure 6)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def finish(ax, name: str, xlabel: str, ylabel: str, plot_title: str) -> None:
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(plot_title)
        ax.grid(alpha=0.3)
        ax.figure.tight_layout()
        legend_below(ax.figure)
        save_figure(ax.figure, out_dir / name)

    _, ax = plt.subplots(figsize=(7, 4.5))
    for method, g in latency.groupby("method", sort=False):
        ax.plot(g["latency_budget_s"], g["accuracy"], marker="o", label=METHOD_NAMES.get(method, method))
    finish(ax, "accuracy_vs_latency.png", "latency budget (s)", "test accuracy", title)

    _, ax = plt.subplots(figsize=(7, 4.5))
    ber = (corruption["corruption_mode"] == "ber").all()
    hit = corruption[corruption["error_rate"] > 0]  # a log axis for the bit error rates: no 0
    for layer, g in (hit if ber else corruption).groupby("layer", sort=False):
        ax.plot(g["error_rate"], g["accuracy"], marker=".", label=layer)
    if ber:
        ax.set_xscale("log")
    finish(
        ax,
        "accuracy_vs_corruption.png",
        "bit error rate on the link" if ber else f"fraction of elements hit ({corruption['corruption_mode'].iloc[0]})",
        "test accuracy (original model)",
        f"accuracy with errors in what each split sends (paper's figure 5)\n{title}",
    )

    _, ax = plt.subplots(figsize=(7, 4.5))
    for colname in [c for c in importance.columns if c.startswith("share_")]:
        name = colname[6:]
        ax.plot(
            importance["rank"],
            np.sort(importance[colname].to_numpy())[::-1],
            marker=".",
            label=METHOD_NAMES.get(name, name),
        )
    finish(
        ax,
        "importance.png",
        "unit rank (descending importance)",
        "share of the split layer's importance",
        f"how the split layer's importance is spread (paper's figure 6)\n{title}",
    )

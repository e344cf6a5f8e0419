"""The result blocks of docs/mcpipe.md, from the mcPipe runs' CSVs (see docs/make_results.py)."""

from __future__ import annotations

import math
from collections.abc import Callable

import pandas as pd
from results_common import Runs, block, mean_sd, num, table

SCHEDULES = ("local", "data_parallel", "pipedream", "mcpipe", "greedy")


def _by_schedule(s: pd.DataFrame, cell: Callable[[pd.DataFrame], str]) -> list[list]:
    """One row per (model, N) in the run's order, one cell per schedule from its rows."""
    return [
        [model, n, *(cell(g[g.schedule == sch]) for sch in SCHEDULES)]
        for (model, n), g in s.groupby(["model", "workers"], sort=False)
    ]


@block("mcpipe", "accuracy", "mcpipe")
def mcpipe_accuracy(runs: Runs) -> str:
    s = runs.csv("mcpipe", "summary.csv")
    reached = lambda t: "not reached" if math.isnan(t) else f"{t:.1f}"
    cell = lambda g: f"{g.accuracy_at_time.iloc[0]:.3f} / {reached(g.time_to_target_s.iloc[0])}"
    updates = "; ".join(
        f"{m}, N = {n}: " + ", ".join(f"{sch} {u}" for sch, u in zip(g.schedule, g.updates))
        for (m, n), g in s[s.workers == 2].groupby(["model", "workers"], sort=False)
    )
    return (
        table(["model", "N", *SCHEDULES], _by_schedule(s, cell))
        + f"\n\nUpdates in the {s.sim_time_s.iloc[0]:g} s: {updates}."
    )


@block("mcpipe", "seeds", "mcpipe_seeds")
def mcpipe_seeds(runs: Runs) -> str:
    def cell(g: pd.DataFrame) -> str:
        reached = g.time_to_target_s.dropna()
        time = f"{reached.mean():.2f} s ({len(reached)}/{len(g)})" if len(reached) else "not reached"
        return f"{mean_sd(g.accuracy_at_time)} / {time}"

    return table(["model", "N", *SCHEDULES], _by_schedule(runs.jobs("mcpipe_seeds"), cell))


@block("mcpipe", "memory", "mcpipe")
def mcpipe_memory(runs: Runs) -> str:
    m = runs.csv("mcpipe", "memory.csv")
    pipe, mc = (m[m.schedule == sch].set_index(["model", "workers", "worker"]) for sch in ("pipedream", "mcpipe"))
    rows = [
        [
            *key,
            num(p.params_bytes),
            p.max_weight_versions,
            num(p.peak_state_bytes),
            num(p.theorem1_bytes),
            *(num(mc.loc[key, c]) for c in ("peak_state_bytes", "peak_working_bytes", "theorem1_bytes")),
            num(p.peak_total_bytes),
            num(mc.loc[key, "peak_total_bytes"]),
        ]
        for key, p in pipe.sort_index().iterrows()
    ]
    return table(
        [
            "model",
            "N",
            "worker",
            "stage params",
            "PipeDream versions",
            "PipeDream state",
            "m·Ω/N",
            "mcPipe state",
            "mcPipe working",
            "Ω/N+2(m−1)b√(Ω/N)",
            "PipeDream total",
            "mcPipe total",
        ],
        rows,
    )

"""mcPipe's tables, plots and progress lines: one run's curve, memory and summary rows, and
the job's CSVs and figures from all of them."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from experiments.mcpipe.memory import Memory, theorem1, theorem1_stage
from experiments.mcpipe.versions import nbytes, stores_pairs
from sim.mcpipe.build import Job
from sim.mcpipe.settings import PIPELINES, McpipeSettings
from sim.net import TIMELINE_COLUMNS
from sim.report import channel_columns, frame, legend_below, plot_timeline, save_figure, write_rows

__all__ = [
    "LinkCounts",
    "RunResult",
    "accuracy_time_s",
    "plot_curves",
    "plot_memory",
    "progress_line",
    "run_result",
    "tables",
    "write_timelines",
]


@dataclass
class LinkCounts:
    """What a run's messages cost the links: bytes on the air (resends included), packets
    resent, bits flipped in what was delivered."""

    bytes_sent: int = 0
    retransmissions: int = 0
    bits_flipped: int = 0


@dataclass
class RunResult:
    """One run (model, N, schedule): curves.csv, memory.csv and summary.csv rows, its
    event trace (start time, worker, op, microbatch, weight version) and its devices' states
    (timeline.csv rows of its first microbatches, `sim.mcpipe.links`)."""

    curve: list[dict]
    memory: list[dict]
    summary: dict
    trace: list[tuple]
    timeline: list[dict] = field(default_factory=list)

    def relabelled(self, n: int) -> RunResult:
        """The local run (one device, whatever N) shown beside the N-worker runs."""
        return RunResult(
            [{**r, "workers": n} for r in self.curve],
            [{**r, "workers": n} for r in self.memory],
            {**self.summary, "workers": n},
            self.trace,
            self.timeline,
        )


def accuracy_time_s(m: McpipeSettings) -> float:
    """The fixed time the summary reports accuracy at: `accuracy_at_s`, else `sim_time_s`."""
    return m.accuracy_at_s if m.accuracy_at_s is not None else m.sim_time_s


def _stage_bound(job: Job, schedule: str, layers: range, depth: int) -> float:
    """Theorem 1's bound on one worker's own layers (`theorem1_stage`): what its store keeps per
    later update, layer by layer, at the run's microbatch and depth."""
    weights = [nbytes(*job.model.init[j]) for j in layers]
    pairs = [job.model.pair_bytes[j] for j in layers]
    extra = [pb if stores_pairs(job.m.store, pb, wb) else wb for wb, pb in zip(weights, pairs)]
    return theorem1_stage(schedule, weights, extra, depth, momentum=job.m.momentum > 0)


def _memory_rows(job: Job, settings: dict, mems: list[Memory], bounds, bound: float, depth: int) -> list[dict]:
    """memory.csv: per worker, its device, its layers, its peaks and theorem 1's bounds."""
    rows = []
    for i, (mem, (a, b)) in enumerate(zip(mems, bounds)):
        dev = job.device(i)
        rows.append(
            {
                **settings,
                "worker": i,
                "device": dev.name,
                "device_memory_bytes": dev.memory_bytes,
                "first_layer": a,
                "last_layer": b - 1,
                "params_bytes": sum(nbytes(*job.model.init[j]) for j in range(a, b)),
                "peak_weights_bytes": mem.peak["weights"],
                "peak_working_bytes": mem.peak["working"],
                "peak_vectors_bytes": mem.peak["vectors"],
                "peak_optimizer_bytes": mem.peak["optimizer"],
                "peak_activations_bytes": mem.peak["activations"],
                "peak_state_bytes": mem.peak["state"],
                "peak_total_bytes": mem.peak["total"],
                "max_weight_versions": mem.max_versions,
                "theorem1_bytes": bound,
                "theorem1_stage_bytes": _stage_bound(job, settings["schedule"], range(a, b), depth),
                "exceeds_memory": mem.peak["total"] > dev.memory_bytes,
            }
        )
    return rows


def _summary(
    job: Job, settings: dict, depth: int, rows: list[dict], links: LinkCounts, memory: list[dict], bound: float
) -> dict:
    """summary.csv: the settings a sweep varies, then the run's outcomes."""
    m, c, schedule = job.m, job.cfg.channel, settings["schedule"]
    acc_t = accuracy_time_s(m)
    at = [r for r in rows if r["sim_time_s"] <= acc_t + 1e-9]
    reached = [r for r in rows if r["accuracy"] >= m.target_accuracy]
    return {
        **settings,
        "seed": job.cfg.seed,
        "dataset": job.cfg.dataset.name,
        "microbatch": m.microbatch,
        "depth": depth if schedule in PIPELINES else math.nan,
        "store": m.store if schedule == "mcpipe" else "",
        "rebuild": m.rebuild if schedule == "mcpipe" else "",
        "partition": m.partition if schedule in PIPELINES else "",
        "lr": m.lr,
        "momentum": m.momentum,
        **channel_columns(c),
        "sim_time_s": m.sim_time_s,
        "accuracy_at_s": acc_t,
        "accuracy_at_time": at[-1]["accuracy"],
        "final_accuracy": rows[-1]["accuracy"],
        "best_accuracy": max(r["accuracy"] for r in rows),
        "final_loss": rows[-1]["loss"],
        "target_accuracy": m.target_accuracy,
        "time_to_target_s": reached[0]["sim_time_s"] if reached else math.nan,
        "updates": rows[-1]["updates"],
        "samples": rows[-1]["samples"],
        "bytes_sent": links.bytes_sent,
        "retransmissions": links.retransmissions,
        "bits_flipped": links.bits_flipped,
        "max_peak_total_bytes": max(x["peak_total_bytes"] for x in memory),
        "max_peak_state_bytes": max(x["peak_state_bytes"] for x in memory),
        "max_weight_versions": max(x["max_weight_versions"] for x in memory),
        "theorem1_bytes": bound,  # the paper's statement: an equal split into square matrices
        "max_theorem1_stage_bytes": max(x["theorem1_stage_bytes"] for x in memory),  # its proof, per stage
        "workers_over_memory": sum(bool(x["exceeds_memory"]) for x in memory),
    }


def run_result(
    job: Job,
    schedule: str,
    n: int,
    rows: list[dict],
    links: LinkCounts,
    mems: list[Memory],
    bounds: list[tuple[int, int]],
    depth: int,
    trace: list[tuple],
    timeline: list[dict] | None = None,
) -> RunResult:
    """One run's rows, from the monitor's `rows`, the links' counts and each worker's peaks
    (`bounds`: the [first, end) layers of each worker; `depth`: the pipeline's m, 1 otherwise)."""
    total_bytes = sum(nbytes(w, b) for w, b in job.model.init)
    pd_bound, mc_bound = theorem1(total_bytes, n, depth, job.m.microbatch)
    bound = {"pipedream": pd_bound, "mcpipe": mc_bound}.get(schedule, math.nan)
    settings = {"model": job.model.name, "workers": n, "schedule": schedule}
    memory = _memory_rows(job, settings, mems, bounds, bound, depth)
    curve = [{**settings, **r} for r in rows]
    summary = _summary(job, settings, depth, rows, links, memory, bound)
    return RunResult(curve, memory, summary, trace, timeline or [])


def tables(jobs: list[Job], results: list[RunResult]) -> dict[str, pd.DataFrame]:
    """The job's CSVs by file name: curves, memory, trace, summary and layers."""
    trace = frame(
        {
            "model": res.summary["model"],
            "workers": res.summary["workers"],
            "schedule": res.summary["schedule"],
            "sim_time_s": t,
            "worker": w,
            "op": op,
            "microbatch": k,
            "version": v,
        }
        for res in results
        for (t, w, op, k, v) in res.trace
    )
    return {
        "curves.csv": frame(r for res in results for r in res.curve),
        "memory.csv": frame(r for res in results for r in res.memory),
        "trace.csv": trace,
        "summary.csv": frame(res.summary for res in results),
        "layers.csv": frame(r for job in jobs for r in job.model.layer_rows(job.m.microbatch)),
    }


def write_timelines(results: list[RunResult], out_dir: Path, plots: bool) -> None:
    """timeline.csv (and timeline.png with `plots`) of every distinct run: one file
    `timeline_<model>_N<n>_<schedule>.csv` per run (the local run: N1), naming only what
    varies among the job's runs (`timeline_<schedule>.csv` for one model and N;
    `timeline.csv` for a single run)."""
    runs: dict[tuple, RunResult] = {}
    for res in results:
        s = res.summary
        size = 1 if s["schedule"] == "local" else s["workers"]
        runs.setdefault((s["model"], f"N{size}", s["schedule"]), res)
    sizes = {size for _, size, schedule in runs if schedule != "local"}  # local's N1 names no N of its own
    varies = [len({key[0] for key in runs}) > 1, len(sizes) > 1, len({key[2] for key in runs}) > 1]
    if len(runs) > 1 and not any(varies):
        varies = [False, False, True]
    for key, res in runs.items():
        stem = "_".join(["timeline", *(part for part, v in zip(key, varies) if v)])
        write_rows(res.timeline, out_dir / f"{stem}.csv", TIMELINE_COLUMNS)
        if plots:
            title = f"{key[0]}, {key[1][1:]} workers, {key[2]}: device states (first microbatches)"
            plot_timeline(res.timeline, out_dir / f"{stem}.png", title=title)


def progress_line(res: RunResult) -> str:
    """One finished run, as `progress=true` prints it."""
    s = res.summary
    return (
        f"{s['model']} N={s['workers']} {s['schedule']:13s} "
        f"acc@{s['accuracy_at_s']:g}s={s['accuracy_at_time']:.3f} t_target={s['time_to_target_s']:.3g}s "
        f"peak={s['max_peak_state_bytes']}B"
    )


def plot_curves(curves: pd.DataFrame, out_dir: Path, acc_t: float) -> None:
    """accuracy_vs_time.png: test accuracy against simulated time, a panel per model and N."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted(
        {(r.model, r.workers) for r in curves[curves.schedule != "local"].itertuples()}
        or {(r.model, 1) for r in curves.itertuples()}
    )
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
    for ax, (model, n) in zip(axes[0], panels):
        g = curves[(curves.model == model) & (curves.workers == n)]
        for sched, h in g.groupby("schedule", sort=False):
            ax.plot(h.sim_time_s, h.accuracy, label=sched, lw=1.4)
        ax.axvline(acc_t, color="grey", lw=0.6, ls=":")
        ax.set_title(f"{model}, {n} workers")
        ax.set_xlabel("simulated training time (s)")
        ax.set_ylabel("test accuracy")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    legend_below(fig)
    save_figure(fig, out_dir / "accuracy_vs_time.png")


def plot_memory(memory: pd.DataFrame, out_dir: Path) -> None:
    """memory.png: PipeDream's and mcPipe's peak weights + vectors per worker, theorem 1 as marks
    (black: the paper's statement; grey: its proof on the worker's own layers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mem = memory[memory.schedule.isin(["pipedream", "mcpipe"])]
    panels = sorted({(r.model, r.workers) for r in mem.itertuples()})
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, (model, n) in zip(axes[0], panels):
        g = mem[(mem.model == model) & (mem.workers == n)]
        for j, sched in enumerate(["pipedream", "mcpipe"]):
            h = g[g.schedule == sched]
            xs = h.worker.to_numpy() + (j - 0.5) * 0.38
            ax.bar(xs, h.peak_state_bytes / 1024, width=0.36, label=f"{sched} (weights+vectors)")
            for bound, color, name in (
                ("theorem1_bytes", "k", "theorem 1"),
                ("theorem1_stage_bytes", "0.55", "theorem 1, this stage"),
            ):
                ax.scatter(
                    xs, h[bound] / 1024, marker="_", s=300, color=color, label=name if j == 0 else None, zorder=3
                )
        ax.set_title(f"{model}, {n} workers")
        ax.set_xlabel("worker (stage)")
        ax.set_ylabel("peak KiB")
        ax.set_xticks(range(n))
    fig.tight_layout()
    legend_below(fig)
    save_figure(fig, out_dir / "memory.png")

"""What a NoNN job reports beyond its tables: the one-row summary (summary.csv), the robustness
and latency plots, and the lines it prints."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from experiments.nonn.pipeline import TrainedModels
from sim.config import Config
from sim.nonn.fleet import FleetResult
from sim.report import channel_columns, legend_below, plot_timeline, save_figure

__all__ = ["plot", "plot_timelines", "print_summary", "summary_table"]


def _setting_columns(cfg: Config, k: int) -> dict:
    """The settings that tell one job of a sweep from another."""
    n, c = cfg.workload, cfg.channel
    return {
        "workload": "nonn",
        "seed": cfg.seed,
        "dataset": cfg.dataset.name,
        "student_data": n.data,
        "num_students": k,
        "rule": n.rule,
        "resolution": n.resolution,
        "device": n.device,
        **channel_columns(c),
        "memory_budget_bytes": n.memory_budget_bytes,
        "flop_budget": n.flop_budget,
    }


def _accuracy_columns(tr: TrainedModels, comparison: pd.DataFrame, fleet: FleetResult) -> dict:
    """Test accuracy of every model (NaN for a baseline not trained), the weights the searches
    chose, and the NoNN's accuracy on what the link delivered."""
    accs = dict(zip(comparison["model"], comparison["accuracy"]))
    return {
        "teacher_accuracy": accs["teacher"],
        "nonn_accuracy": accs["NoNN"],
        "nonn_kd_only_accuracy": accs.get("NoNN, KD only", math.nan),
        "kd_student_accuracy": accs.get("KD student", math.nan),
        "atkd_student_accuracy": accs.get("ATKD student", math.nan),
        "nonn_beta": tr.beta,
        "atkd_beta": math.nan if tr.at_beta is None else tr.at_beta,
        "nonn_delivered_accuracy": fleet.delivered_accuracy,
        "nonn_bits_flipped": fleet.bits_flipped,
    }


def _partition_columns(tr: TrainedModels, epsilon: float) -> dict:
    """The knowledge partition, P0's effect on the teacher (and whether it stayed under
    `epsilon`, the groups refused as P0 on the way), the students against the budgets."""
    kp = tr.partition
    delta = tr.p0_val_accuracy - tr.teacher_val_accuracy
    return {
        "communities": kp.communities,
        "modularity": kp.modularity,
        "p0_filters": len(kp.p0),
        "partition_sizes": " ".join(map(str, kp.sizes)),
        "teacher_val_accuracy": tr.teacher_val_accuracy,
        "p0_zeroed_val_accuracy": tr.p0_val_accuracy,
        "delta_val_accuracy": delta,
        "p0_epsilon": epsilon,
        "p0_groups_refused": kp.p0_refused,
        "p0_constraint_held": abs(delta) < epsilon,
        "student_params_max": max(c.params for c in tr.costs),
        "student_flops_max": max(c.flops for c in tr.costs),
        "students_fit_budget": all(c.fits for c in tr.costs),
    }


def _inference_columns(fleet: FleetResult, k: int) -> dict:
    """Latency and energy of the NoNN on small devices against the split baseline and the
    teacher, and its accuracy with one device failed or one left."""
    scenarios, robustness = fleet.scenarios, fleet.robustness
    nonn_row = scenarios.iloc[0]
    split_row = scenarios[scenarios["method"].str.startswith("split")].iloc[0]
    teacher_row = scenarios[scenarios["method"] == "teacher"].iloc[0]
    return {
        "nonn_latency_s": nonn_row["latency_s"],
        "nonn_energy_per_node_j": nonn_row["energy_per_node_j"],
        "split_latency_s": split_row["latency_s"],
        "speedup_vs_split": split_row["latency_s"] / nonn_row["latency_s"],
        "teacher_latency_s": teacher_row["latency_s"],
        "speedup_vs_teacher": teacher_row["latency_s"] / nonn_row["latency_s"],
        "accuracy_one_device_failed_mean": robustness.iloc[-2]["accuracy_mean"] if k > 1 else math.nan,
        "accuracy_one_device_active_max": robustness.iloc[0]["accuracy_max"],
    }


def summary_table(cfg: Config, tr: TrainedModels, comparison: pd.DataFrame, fleet: FleetResult) -> pd.DataFrame:
    """summary.csv: the job's settings, every model's accuracy, the partition, and the
    simulated latency against the split baseline and the teacher, in one row."""
    k = len(tr.nonn.sizes)
    return pd.DataFrame(
        [
            {
                **_setting_columns(cfg, k),
                **_accuracy_columns(tr, comparison, fleet),
                **_partition_columns(tr, cfg.workload.p0_epsilon),
                **_inference_columns(fleet, k),
            }
        ]
    )


def plot(out_dir: Path, scenarios: pd.DataFrame, robustness: pd.DataFrame, k: int) -> None:
    """robustness.png (accuracy against active devices) and latency.png (per scenario)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(7, 4.5))
    r = robustness
    ax.plot(r["active_devices"], r["accuracy_mean"], marker="o", label="mean over subsets")
    ax.fill_between(r["active_devices"], r["accuracy_min"], r["accuracy_max"], alpha=0.25, label="min to max")
    ax.set_xlabel("active devices")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("test accuracy")
    ax.set_title(f"NoNN-{k}S: accuracy when devices fail")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    legend_below(fig)
    save_figure(fig, out_dir / "robustness.png")

    fig, ax = plt.subplots(figsize=(8, 4.5))
    s = scenarios
    labels = [f"{m}\n{sc}" for m, sc in zip(s["method"], s["scenario"])]
    ax.barh(labels, 1e3 * s["compute_s"], label="compute (slowest device)")
    ax.barh(labels, 1e3 * s["communication_s"], left=1e3 * s["compute_s"], label="communication and waiting")
    total = 1e3 * (s["compute_s"] + s["communication_s"])
    for y, t in enumerate(total):  # a linear axis, so the two parts of a bar read as they add up
        ax.text(t, y, f" {t:,.1f} ms", va="center", fontsize=6)
    ax.set_xlim(0, 1.15 * float(total.max()))
    ax.set_title(f"NoNN-{k}S against the horizontally split baseline and the teacher", fontsize=9)
    ax.set_xlabel("simulated latency per inference (ms)")
    ax.tick_params(axis="y", labelsize=6)
    fig.tight_layout()
    legend_below(fig)
    save_figure(fig, out_dir / "latency.png")


def plot_timelines(out_dir: Path, fleet: FleetResult, k: int, inferences: int = 3) -> None:
    """timeline.png (the NoNN on the first scenario) and timeline_split.png (the split baseline
    on the same devices): the device states of their first `inferences` inferences."""
    s = fleet.scenarios
    split = s[s["method"].str.startswith("split")]
    for row, path in ((s.iloc[0], "timeline.png"), (split.iloc[0], "timeline_split.png")):
        horizon = inferences * row["latency_max_s"]
        rows = [
            r
            for r in fleet.timeline
            if r["scenario"] == row["scenario"] and r["method"] == row["method"] and r["start_s"] < horizon
        ]
        title = f"NoNN-{k}S, {row['method']} on {row['scenario']}: the first {inferences} inferences"
        plot_timeline(rows, out_dir / path, title=title)


def print_summary(s: pd.Series, comparison: pd.DataFrame, out_dir: Path) -> None:
    """The partition, each model's accuracy and size, and the latencies, for the terminal."""
    print(
        f"NoNN-{s['num_students']}S on {s['dataset']}: partitions {s['partition_sizes']} (P0 {s['p0_filters']} "
        f"filters, modularity {s['modularity']:.3f}, val accuracy change with P0 zeroed "
        f"{s['delta_val_accuracy']:+.3f}, {'within' if s['p0_constraint_held'] else 'NOT within'} epsilon "
        f"{s['p0_epsilon']:g}; larger groups refused as P0: {s['p0_groups_refused']})"
    )
    for _, r in comparison.iterrows():
        print(
            f"  {r['model']:<14} accuracy {r['accuracy']:.4f}  params/device {r['params_per_device']:>9,}  "
            f"FLOPs/device {r['flops_per_device']:>12,}"
        )
    print(
        f"  latency: NoNN {1e3 * s['nonn_latency_s']:.2f} ms, split baseline {1e3 * s['split_latency_s']:.2f} ms "
        f"(speed-up {s['speedup_vs_split']:.1f}x), teacher on one device {1e3 * s['teacher_latency_s']:.2f} ms"
    )
    print(f"  reports in {out_dir}")

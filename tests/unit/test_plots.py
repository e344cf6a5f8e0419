"""Every workload's plots put their legend outside the axes (`sim.report.legend_below`), where it
hides no line, bar or marker, and the saved PNG keeps it."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from PIL import Image

import sim.mcpipe.report as mcpipe
import sim.nair.report as nair
import sim.nonn.report as nonn
import sim.report as report


def _legends_outside_the_axes(fig) -> int:
    """How many legends the figure has, each checked to lie clear of every axes (drawn)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]
    for legend in legends:
        box = legend.get_window_extent(renderer)
        for ax in fig.axes:
            assert not box.overlaps(ax.get_window_extent(renderer)), f"a legend over the axes {ax.get_title()!r}"
    return len(legends)


@pytest.fixture
def figures(monkeypatch):
    """The figures the plotting functions save, checked and closed instead of written."""
    saved = []

    def keep(fig, path):
        saved.append((path.name, _legends_outside_the_axes(fig)))
        plt.close(fig)
        return path

    for module in (report, mcpipe, nair, nonn):
        monkeypatch.setattr(module, "save_figure", keep)
    return saved


def test_the_federated_plots(figures, tmp_path) -> None:
    rounds = pd.DataFrame(
        {
            "strategy": ["fedavg"] * 3 + ["fedprox"] * 3,
            "round": [1, 2, 3] * 2,
            "accuracy": [0.5, 0.8, 0.9, 0.4, 0.7, 0.95],
            "sim_time_s": [1.0, 2.0, 3.0] * 2,
            "energy_j": [1.0] * 6,
            "bytes_down": [100] * 6,
            "bytes_up": [100] * 6,
        }
    )
    report.plot_accuracy(rounds, ["strategy"], tmp_path, target=0.8)
    timeline = [
        {"device": d, "state": s, "start_s": t, "end_s": t + 1.0}
        for d in ("server", "1", "2")
        for t, s in enumerate(("receive", "compute", "transmit", "offline"))
    ]
    report.plot_timeline(timeline, tmp_path / "timeline.png")
    assert [n for _, n in figures] == [1] * 5  # accuracy against round, time, energy, bytes; the timeline


def test_mcpipe_plots(figures, tmp_path) -> None:
    schedules = ["local", "data_parallel", "pipedream", "mcpipe", "greedy"]
    curves = pd.DataFrame(
        [
            {"model": m, "workers": n, "schedule": s, "sim_time_s": t, "accuracy": min(1.0, 0.1 + t / 4)}
            for m in ("fc", "vgg")
            for n in (2, 3)
            for s in schedules
            for t in np.linspace(0, 4, 9)
        ]
    )
    mcpipe.plot_curves(curves, tmp_path, 2.0)
    memory = pd.DataFrame(
        [
            {
                "model": m,
                "workers": n,
                "schedule": s,
                "worker": w,
                "peak_state_bytes": 1000.0 * (w + 1),
                "theorem1_bytes": 1500.0,
                "theorem1_stage_bytes": 900.0 * (w + 1),
            }
            for m in ("fc", "vgg")
            for n in (2, 3)
            for s in ("pipedream", "mcpipe")
            for w in range(n)
        ]
    )
    mcpipe.plot_memory(memory, tmp_path)
    assert figures == [("accuracy_vs_time.png", 1), ("memory.png", 1)]


def test_nair_and_nonn_plots(figures, tmp_path) -> None:
    latency = pd.DataFrame(
        [{"method": m, "latency_budget_s": b, "accuracy": 0.5 + b} for m in ("original", "nair") for b in (0.1, 0.3)]
    )
    corruption = pd.DataFrame(
        [
            {"corruption_mode": "ber", "layer": layer, "error_rate": e, "accuracy": 1 - e}
            for layer in ("input", "stage1")
            for e in (0.0, 1e-3, 1e-1)
        ]
    )
    importance = pd.DataFrame({"rank": [1, 2, 3], "share_original": [0.5, 0.3, 0.2], "share_nair": [0.6, 0.3, 0.1]})
    nair.plots(tmp_path, latency, corruption, importance, "digits")
    robustness = pd.DataFrame(
        {
            "active_devices": [1, 2],
            "accuracy_mean": [0.9, 0.97],
            "accuracy_min": [0.87, 0.97],
            "accuracy_max": [0.94, 0.97],
        }
    )
    scenarios = pd.DataFrame(
        {
            "method": ["NoNN", "teacher"],
            "scenario": ["a", "b"],
            "compute_s": [0.001, 0.03],
            "communication_s": [0.01, 0.007],
        }
    )
    nonn.plot(tmp_path, scenarios, robustness, 2)
    assert [n for _, n in figures] == [1] * 5


def test_the_saved_image_keeps_the_legend_below_the_axes(tmp_path) -> None:
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1], [0, 1], label="a line")
    fig.tight_layout()
    report.legend_below(fig)
    assert _legends_outside_the_axes(fig) == 1
    with Image.open(report.save_figure(fig, tmp_path / "p.png")) as png:
        assert png.size[1] > 3 * 110 - 10  # the figure's 3 inches at 110 dpi, the legend added below

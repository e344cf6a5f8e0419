"""mcPipe as a user runs it: `python -m sim +experiment=mcpipe` with tiny overrides, a sweep,
a bad setting (the entry point turns the ConfigError into `error: ...`, exit 2), and
byte-identical reruns."""

from __future__ import annotations

import pandas as pd
import pytest

from sim.config import ConfigError
from sim.jobs import run

from ..unit.test_mcpipe import _cfg

TINY = [
    "workload.models=[fc]",
    "workload.fc_hidden=16",
    "workload.workers=[2]",
    "workload.microbatch=4",
    "workload.sim_time_s=0.04",
    "workload.eval_every_s=0.01",
    "workload.accuracy_at_s=0.02",
    "progress=false",
]
FILES = [
    "curves.csv",
    "memory.csv",
    "layers.csv",
    "trace.csv",
    "summary.csv",
    "comparison.csv",
    "accuracy_vs_time.png",
    "memory.png",
    "wallclock.json",
    *(
        f"timeline_{s}.{ext}"
        for s in ("local", "data_parallel", "pipedream", "mcpipe", "greedy")
        for ext in ("csv", "png")
    ),
]


def test_tiny_experiment_end_to_end(run_sim, tmp_path) -> None:
    out = tmp_path / "run"
    proc = run_sim("+experiment=mcpipe", *TINY, f"hydra.run.dir={out}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in FILES:
        assert (out / name).is_file(), name
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["schedule"]) == ["local", "data_parallel", "pipedream", "mcpipe", "greedy"]
    assert (summary["workers"] == 2).all() and (summary["accuracy_at_s"] == 0.02).all()
    assert summary["accuracy_at_time"].between(0, 1).all() and (summary["updates"] > 0).all()
    curves = pd.read_csv(out / "curves.csv")
    assert len(curves) == 5 * 5  # five schedules, recorded at 0, 0.01, ..., 0.04 s
    memory = pd.read_csv(out / "memory.csv")
    pd_mc = memory[memory.schedule.isin(["pipedream", "mcpipe"])]
    assert len(pd_mc) == 4 and pd_mc["theorem1_bytes"].notna().all()
    timeline = pd.read_csv(out / "timeline_pipedream.csv")
    assert list(timeline.columns) == ["device", "state", "start_s", "end_s"]
    assert set(timeline["device"]) == {"master", "w0", "w1"}


def test_sweep_over_depth_writes_one_comparison(run_sim, tmp_path) -> None:
    sweep = tmp_path / "sweep"
    proc = run_sim(
        "-m",
        "+experiment=mcpipe",
        *TINY,
        "workload.schedules=[pipedream,mcpipe]",
        "workload.depth=2,4",
        f"hydra.sweep.dir={sweep}",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = pd.read_csv(sweep / "comparison.csv")
    assert len(table) == 4 and sorted(set(table["depth"])) == [2, 4]
    # in a sweep, one comparison for all jobs, none in a job folder (named by its swept override)
    for job in ("workload.depth=2", "workload.depth=4"):
        assert (sweep / job / "summary.csv").is_file() and not (sweep / job / "comparison.csv").exists()


def test_bad_setting_raises_one_line_and_writes_nothing(tmp_path) -> None:
    cfg = _cfg(workers=[9])
    with pytest.raises(ConfigError) as err:
        run(cfg, tmp_path / "bad")
    assert str(err.value).startswith("workload.workers=[9]") and "\n" not in str(err.value)
    assert not (tmp_path / "bad").exists()


def test_same_seed_gives_byte_identical_csvs(tmp_path) -> None:
    cfg = _cfg(workers=[2], sim_time_s=0.004, eval_every_s=0.002, schedules=["data_parallel", "mcpipe", "greedy"])
    cfg.channel.ber = 1e-4  # retransmissions drawn from the seeded link streams
    run(cfg, tmp_path / "a")
    run(cfg, tmp_path / "b")
    names = sorted(p.name for p in (tmp_path / "a").glob("*.csv"))
    timelines = ["timeline_data_parallel.csv", "timeline_greedy.csv", "timeline_mcpipe.csv"]
    assert len(names) == 6 + 3 and all(t in names for t in timelines)
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert pd.read_csv(tmp_path / "a" / "summary.csv")["retransmissions"].sum() > 0

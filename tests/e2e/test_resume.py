"""Nothing lost: rows reach disk as rounds end, an interrupted run resumes byte-identical (sync,
async, a user's app, several strategies), and a folder holding a run is never overwritten by
another."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import numpy as np
import pytest

from sim.backends.local import LocalBackend
from sim.config import ConfigError
from sim.jobs import run

from ..conftest import TINY_OVERRIDES, finish, make_tiny_cfg, start_sim


class Crash(RuntimeError):
    """The machine went down (a stand-in for SIGKILL that a test can catch)."""


def _csvs(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.csv"))}


def _crash_after(monkeypatch, executions: int) -> None:
    """The run dies when it starts its `executions + 1`-th batch of client computations."""
    started = {"n": 0}
    real = LocalBackend.execute

    def execute(self, app, jobs, done=None):
        if started["n"] == executions:
            raise Crash
        started["n"] += 1
        return real(self, app, jobs, done)

    monkeypatch.setattr(LocalBackend, "execute", execute)


def _cfg(rounds: int = 5):
    cfg = make_tiny_cfg()
    cfg.fleet.num_devices = 8
    cfg.workload.rounds = rounds
    cfg.plots = False
    return cfg


def _resume_matches(tmp_path, monkeypatch, cfg, crash_at: int) -> None:
    reference = tmp_path / "reference"
    run(cfg, reference)
    out = tmp_path / "resumed"
    with monkeypatch.context() as m:
        _crash_after(m, crash_at)
        with pytest.raises(Crash):
            run(cfg, out)
    assert (out / ".edgesim" / "journal").is_dir() and not (out / ".edgesim" / "complete").exists()
    replayed = {"n": 0}
    real = LocalBackend.execute

    def counting(self, app, jobs, done=None):
        replayed["n"] += 1
        return real(self, app, jobs, done)

    monkeypatch.setattr(LocalBackend, "execute", counting)
    run(cfg, out)
    assert _csvs(out) == _csvs(reference)
    assert (out / ".edgesim" / "complete").exists() and not (out / ".edgesim" / "journal").exists()
    return replayed["n"]


def test_rows_reach_disk_as_rounds_end(tmp_path, monkeypatch) -> None:
    cfg = _cfg(rounds=5)
    _crash_after(monkeypatch, 3)  # rounds 1-3 trained, round 4's training never starts
    with pytest.raises(Crash):
        run(cfg, tmp_path)
    rounds = np.genfromtxt(tmp_path / "rounds.csv", delimiter=",", names=True)
    assert list(rounds["round"]) == [1, 2]  # round 3's server work was still owed
    assert (tmp_path / "clients.csv").exists() and (tmp_path / "config.yaml").exists()


def test_an_interrupted_run_resumes_byte_identical(tmp_path, monkeypatch) -> None:
    computed = _resume_matches(tmp_path, monkeypatch, _cfg(rounds=5), crash_at=3)
    assert computed == 2  # rounds 1-3 came from the journal


def test_resume_with_stragglers_and_churn(tmp_path, monkeypatch) -> None:
    cfg = _cfg(rounds=5)
    cfg.strategy.timeout_s = 1.0  # devices still working when the next round starts
    cfg.fleet.availability = 0.7
    cfg.fleet.online_s = 20.0
    cfg.channel.ber = 1e-5
    _resume_matches(tmp_path, monkeypatch, cfg, crash_at=2)


def test_resume_of_several_strategies_and_an_async_one(tmp_path, monkeypatch) -> None:
    cfg = _cfg(rounds=3)
    cfg.compare = ["fedavg", "fedbuff"]
    cfg.compared = {"fedbuff": {"concurrency": 4, "buffer_size": 2}}
    _resume_matches(tmp_path, monkeypatch, cfg, crash_at=5)  # fedavg's 3 rounds, then into fedbuff's


def test_resume_of_a_users_app(tmp_path, monkeypatch) -> None:
    cfg = _cfg()
    cfg.workload.app.server = "tests.quickstart_app.server_app:app"
    cfg.workload.app.client = "tests.quickstart_app.client_app:app"
    cfg.workload.app.run_config = {
        "num-server-rounds": 4,
        "fraction-train": 0.5,
        "fraction-evaluate": 0.5,
        "lr": 0.1,
        "local-epochs": 1,
        "batch-size": 32,
    }
    cfg.workload.app.accuracy_metric = "eval_acc"
    cfg.workload.app.loss_metric = "eval_loss"
    _resume_matches(tmp_path, monkeypatch, cfg, crash_at=3)


def test_a_folder_holding_another_run_is_never_overwritten(tmp_path) -> None:
    cfg = _cfg(rounds=1)
    run(cfg, tmp_path)
    before = _csvs(tmp_path)
    other = _cfg(rounds=1)
    other.seed = 1
    with pytest.raises(ConfigError, match=r"holds a complete run with other settings \(seed: 0 there, 1 now\)"):
        run(other, tmp_path)
    assert _csvs(tmp_path) == before
    assert run(cfg, tmp_path) is None  # complete already: nothing runs
    fresh = _cfg(rounds=1)
    fresh.resume = True
    with pytest.raises(ConfigError, match="resume=true: .* holds no interrupted run"):
        run(fresh, tmp_path / "empty")


def test_sigkill_then_rerun_resumes(tmp_path) -> None:
    """The command line: killed with SIGKILL after round 3's rows are on disk, the same command
    with resume=true ends with the CSVs of an uninterrupted run."""
    args = [*TINY_OVERRIDES, "workload.rounds=8", "fleet.num_devices=10", "plots=false"]
    finish(start_sim([*args, f"hydra.run.dir={tmp_path / 'ref'}"], tmp_path))
    out = tmp_path / "killed"
    proc = start_sim([*args, f"hydra.run.dir={out}"], tmp_path)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        rows = out / "rounds.csv"
        if rows.exists() and len(rows.read_text().splitlines()) >= 4:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    finish(proc)
    resumed = finish(start_sim([*args, "resume=true", f"hydra.run.dir={out}"], tmp_path))
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming the interrupted run" in resumed.stdout
    assert _csvs(out) == _csvs(tmp_path / "ref")


SWEEP = [*TINY_OVERRIDES, "plots=false", "channel.ber=0,1e-4"]


def test_a_rerun_sweep_skips_its_finished_jobs(tmp_path) -> None:
    """Jobs are folders named by their swept overrides; rerunning the sweep with a value added
    runs only the new job and leaves the finished ones untouched; comparison.csv has all."""
    sweep = tmp_path / "sweep"
    first = finish(start_sim(["-m", *SWEEP, f"hydra.sweep.dir={sweep}"], tmp_path))
    assert first.returncode == 0, first.stderr[-2000:]
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["channel.ber=0", "channel.ber=0.0001"]
    before = _csvs(sweep / "channel.ber=0")
    again = finish(start_sim(["-m", *SWEEP[:-1], "channel.ber=0,1e-4,1e-3", f"hydra.sweep.dir={sweep}"], tmp_path))
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count("complete there already") == 2
    assert _csvs(sweep / "channel.ber=0") == before
    table = np.genfromtxt(sweep / "comparison.csv", delimiter=",", names=True, dtype=None, encoding=None)
    assert sorted(table["channel_ber"].tolist()) == [0, 1e-4, 1e-3]


def test_any_sweep_subdir_gets_its_comparison(tmp_path) -> None:
    sweep = tmp_path / "sweep"
    done = finish(
        start_sim(["-m", *SWEEP, f"hydra.sweep.dir={sweep}", "hydra.sweep.subdir=runs/${hydra.job.num}"], tmp_path)
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert (sweep / "runs" / "1" / "summary.csv").exists()
    table = np.genfromtxt(sweep / "comparison.csv", delimiter=",", names=True, dtype=None, encoding=None)
    assert table["job"].tolist() == [0, 1]


def test_an_interrupted_sweep_keeps_the_comparison_of_its_finished_jobs(tmp_path) -> None:
    sweep = tmp_path / "sweep"
    args = [*TINY_OVERRIDES, "plots=false", "workload.rounds=40", "seed=1,2,3"]
    proc = start_sim(["-m", *args, f"hydra.sweep.dir={sweep}"], tmp_path)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if (sweep / "seed=2" / "rounds.csv").exists():  # the first job is over
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    finish(proc)
    table = np.genfromtxt(sweep / "comparison.csv", delimiter=",", names=True, dtype=None, encoding=None, ndmin=1)
    assert table["seed"].tolist() == [1]

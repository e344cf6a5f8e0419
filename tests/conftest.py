"""Shared fixtures: a tiny, fast configuration and a runner for `python -m sim`."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sim.config import Config
from sim.jobs import default_config

REPO = Path(__file__).resolve().parent.parent
CONF_DIR = REPO / "sim" / "conf"

# the same tiny job, as command-line overrides (see `tiny_cfg`)
TINY_OVERRIDES = ["workload.model=mlp", "fleet.num_devices=6", "workload.rounds=2", "workload.local_epochs=1",
                  "progress=false"]


def make_tiny_cfg() -> Config:
    """A job that runs in well under a second: 6 devices, an MLP, 2 rounds of 1 epoch."""
    cfg = default_config("federated")
    cfg.progress = False
    cfg.fleet.num_devices = 6
    cfg.workload.model = "mlp"
    cfg.workload.rounds = 2
    cfg.workload.local_epochs = 1
    return cfg


@pytest.fixture
def tiny_cfg():
    """A factory: `tiny_cfg()` gives a fresh tiny `Config` to adjust."""
    return make_tiny_cfg


def sim_env() -> dict[str, str]:
    env = dict(os.environ, PYTHONHASHSEED="0", MPLBACKEND="Agg", FLWR_TELEMETRY_ENABLED="0", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


def start_sim(args: list[str], cwd: Path) -> subprocess.Popen:
    """`python -m sim ARGS` in `cwd`, started (collect with `finish`)."""
    return subprocess.Popen([sys.executable, "-m", "sim", *args], cwd=cwd, env=sim_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)


def finish(proc: subprocess.Popen, timeout: float = 180) -> subprocess.CompletedProcess:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.fixture
def run_sim(tmp_path):
    """`run_sim(*args)`: run `python -m sim ARGS` with cwd = a fresh tmp dir; returns the
    CompletedProcess. Pass `hydra.run.dir=...` / `hydra.sweep.dir=...` to place outputs."""
    def _run(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        return finish(start_sim(list(args), tmp_path), timeout)
    return _run

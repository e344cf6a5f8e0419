"""Shared fixtures: a tiny, fast configuration and a runner for `python -m sim`; and the `unit` /
`e2e` marks, given to every test by the folder it lives in."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sim.config import Config
from sim.jobs import default_config

REPO = Path(__file__).resolve().parent.parent
CONF_DIR = REPO / "sim" / "conf"

# the same tiny job, as command-line overrides (see `tiny_cfg`)
TINY_OVERRIDES = [
    "workload.model=mlp",
    "fleet.num_devices=6",
    "workload.rounds=2",
    "workload.local_epochs=1",
    "progress=false",
]


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


def start_sim(args: list[str], cwd: Path, env: dict[str, str] | None = None, **popen) -> subprocess.Popen:
    """`python -m sim ARGS` in `cwd`, started (collect with `finish`) in a process group of its
    own; `env`: variables set beside `sim_env()`'s; `popen`: more of `subprocess.Popen`'s arguments."""
    return subprocess.Popen(
        [sys.executable, "-m", "sim", *args],
        cwd=cwd,
        env={**sim_env(), **(env or {})},
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        **{"start_new_session": True, **popen},
    )


def finish(proc: subprocess.Popen, timeout: float = 180) -> subprocess.CompletedProcess:
    """Wait for a `start_sim` process; past `timeout` s, kill its whole process group (a child
    of its that held its output open would make the wait endless) and return what it printed."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if os.getpgid(proc.pid) == proc.pid:  # a group of its own (`start_sim`'s default), not pytest's
                os.killpg(proc.pid, signal.SIGKILL)
        proc.kill()
        out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.fixture
def run_sim(tmp_path):
    """`run_sim(*args)`: run `python -m sim ARGS` with cwd = a fresh tmp dir; returns the
    CompletedProcess. Pass `hydra.run.dir=...` / `hydra.sweep.dir=...` to place outputs."""

    def _run(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        return finish(start_sim(list(args), tmp_path), timeout)

    return _run


# --- unit / e2e ------------------------------------------------------------------------------
TESTS = Path(__file__).resolve().parent
FOLDER_KINDS = {"unit": "unit", "e2e": "e2e", "golden": "e2e"}  # golden: a whole job, byte-compared


def pytest_collection_modifyitems(config, items) -> None:
    """Mark every collected test by its folder: tests/unit/ `unit` (in-process, one piece),
    tests/e2e/ and tests/golden/ `e2e` (whole jobs, most through `python -m sim`); run one kind
    alone with `-m unit` / `-m e2e`. A test that carries either mark itself keeps it."""
    for item in items:
        if item.get_closest_marker("unit") or item.get_closest_marker("e2e"):
            continue
        folder = Path(str(item.path)).resolve().relative_to(TESTS).parts[0]
        item.add_marker(getattr(pytest.mark, FOLDER_KINDS.get(folder, "unit")))

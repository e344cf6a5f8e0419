"""`sim.start`: a command that runs a job imports torch before Hydra and everything else
(torch's import walks every module loaded before it); one that runs no job, or names an
unknown option, does not import it, nor numpy."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sim.start import runs_a_job
from tests.conftest import REPO, sim_env


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], True),
        (["+experiment=nonn", "seed=3"], True),
        (["-m", "seed=0,1"], True),
        (["--multirun", "seed=0,1"], True),
        (["--help"], False),
        (["-h"], False),
        (["seed=0", "--cfg", "job"], False),
        (["--info"], False),
        (["-sc", "install=bash"], False),
    ],
)
def test_which_command_lines_run_a_job(args, expected) -> None:
    assert runs_a_job(args) is expected


def _imported(args: list[str]) -> tuple[subprocess.CompletedProcess, list[str]]:
    """`python -X importtime -m sim ARGS` in one process (`EDGESIM_SPLIT_START=0`: split, the
    job's process imports no Hydra at all, tests/e2e/test_split.py): the process, and the
    top-level packages in the order their imports finished."""
    res = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "sim", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env=dict(sim_env(), EDGESIM_SPLIT_START="0"),
    )
    order = [line.rpartition("|")[2].strip() for line in res.stderr.splitlines() if line.startswith("import time:")]
    return res, [name for name in order if "." not in name]


def test_a_run_imports_torch_before_hydra_and_the_settings(tmp_path) -> None:
    # a setting the job's own checks refuse: the command gets as far as the job, writes nothing
    res, order = _imported(["fleet.num_devices=0", f"hydra.run.dir={tmp_path / 'r'}"])
    assert res.returncode == 2 and "fleet.num_devices" in res.stderr
    assert order.index("torch") < min(order.index(name) for name in ("hydra", "omegaconf", "yaml"))
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(("args", "status"), [(["--help"], 0), (["strategy=nosuch"], 2)])
def test_help_and_an_unknown_option_do_not_wait_for_torch(args, status) -> None:
    res, order = _imported(args)
    assert res.returncode == status, res.stderr[-800:]
    assert ("workload" in res.stdout) if status == 0 else ("strategy='nosuch': unknown option" in res.stderr)
    assert "torch" not in order
    # nor for numpy and SimPy: the command line's modules (as a split command's, `sim.split`)
    # check settings without them (`devices` names its fleets lazily, `sim.jobs` its network)
    assert "numpy" not in order and "simpy" not in order

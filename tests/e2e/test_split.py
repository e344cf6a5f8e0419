"""`sim.split`: a command that runs jobs starts as two processes, the job's (the pid the shell
started) and the command line's (its child). The same files as from one process, byte for byte;
the job runs where torch is and Hydra is not; every outcome of the job reaches the user as it
would from one process (a refused setting, a fault, a traceback, the exit status); ending either
process ends the command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import TINY_OVERRIDES, finish, start_sim

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the split start forks")

APP = "workload.app.server=tests.split_app:{}"
CLIENT = "workload.app.client=tests.quickstart_app.client_app:app"


def _app(name: str, result: Path, out: Path) -> list[str]:
    return [APP.format(name), CLIENT, f"+workload.app.run_config.result-json={result}", f"hydra.run.dir={out}"]


def _sim(args: list[str], cwd: Path, split: str = "1", **popen) -> subprocess.Popen:
    return start_sim(args, cwd, {"EDGESIM_SPLIT_START": split}, **popen)


def _run(args: list[str], cwd: Path, split: str = "1") -> subprocess.CompletedProcess:
    return finish(_sim(args, cwd, split))


def _files(folder: Path) -> dict[str, bytes]:
    """What a run wrote that depends neither on this machine's clock (the log's and the timings'
    lines do) nor on the folder's name (the report names it)."""
    skip = {"wallclock.json", "__main__.log", "hydra.yaml"}
    files = [p for p in sorted(folder.rglob("*")) if p.is_file() and p.name not in skip]
    return {str(p.relative_to(folder)): p.read_bytes().replace(bytes(folder), b"OUT") for p in files}


def test_split_and_one_process_write_the_same_files(tmp_path) -> None:
    args = [*TINY_OVERRIDES, "plots=false"]
    one = _run([*args, f"hydra.run.dir={tmp_path / 'one'}"], tmp_path, split="0")
    two = _run([*args, f"hydra.run.dir={tmp_path / 'two'}"], tmp_path, split="1")
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-2000:]
    assert _files(tmp_path / "one") == _files(tmp_path / "two")
    assert "outputs:" in two.stdout
    log = (tmp_path / "two" / "__main__.log").read_text()  # Hydra's log of the job, written by the job's process
    assert "edgesim: federated" in log and "outputs:" in log


def test_a_sweep_runs_in_one_process(tmp_path) -> None:
    # its command line checks every job first, importing torch and the app there: no split
    facts = tmp_path / "facts.json"
    args = [*_app("where_app", facts, tmp_path / "r")[:-1], "seed=0", f"hydra.sweep.dir={tmp_path / 's'}"]
    proc = _sim(["-m", *args], tmp_path)
    err = finish(proc).stderr
    assert proc.returncode == 0, err[-2000:]
    assert json.loads(facts.read_text()) == {"pid": proc.pid, "hydra": True, "omegaconf": True, "yaml": True}


def test_the_job_runs_in_the_started_process_without_hydra_or_yaml(tmp_path) -> None:
    # the YAML of the run's settings (settings.yaml, config.yaml, report.html's) is the command
    # line's, rendered while the job's process imported torch: `sim.yamltext`
    facts = tmp_path / "facts.json"
    proc = _sim(
        _app("where_app", facts, tmp_path / "r"),
        tmp_path,
    )
    err = finish(proc).stderr
    assert proc.returncode == 0, err[-2000:]
    seen = json.loads(facts.read_text())
    assert seen == {"pid": proc.pid, "hydra": False, "omegaconf": False, "yaml": False}


def test_a_setting_the_jobs_checks_refuse_is_one_line_and_nothing_written(tmp_path) -> None:
    res = _run(["fleet.num_devices=0", f"hydra.run.dir={tmp_path / 'r'}"], tmp_path)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == ["error: fleet.num_devices=0: must be >= 1 (an empty fleet cannot train)"]
    assert not (tmp_path / "r").exists()


def test_an_exception_in_the_job_is_hydras_traceback_with_the_jobs_own(tmp_path) -> None:
    res = _run([APP.format("raising_app"), CLIENT, f"hydra.run.dir={tmp_path / 'r'}"], tmp_path)
    assert res.returncode == 1
    assert "ValueError: the server app's own bug" in res.stderr
    assert "raised in the job's process" in res.stderr
    assert 'tests/split_app/__init__.py", line' in res.stderr  # the frame that raised, from the job's process


def test_an_unknown_value_of_the_switch_is_one_line(tmp_path) -> None:
    res = _run([f"hydra.run.dir={tmp_path / 'r'}"], tmp_path, split="sometimes")
    assert res.returncode == 2
    assert res.stderr.strip() == "error: EDGESIM_SPLIT_START='sometimes': unknown value; allowed: auto, 0, 1"
    assert not (tmp_path / "r").exists()


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"  # a zombie has ended


def _waiting_job(tmp_path: Path, **popen) -> tuple[subprocess.Popen, Path]:
    started = tmp_path / "started.json"
    proc = _sim(_app("waiting_app", started, tmp_path / "r"), tmp_path, **popen)
    deadline = time.monotonic() + 120
    while not started.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert started.exists(), proc.communicate()[1][-2000:]
    return proc, started


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="finds the command line's pid in /proc")
def test_killing_the_command_line_mid_job_ends_the_command_with_its_signal(tmp_path) -> None:
    proc, started = _waiting_job(tmp_path)
    (command_line,) = _children(proc.pid)
    os.kill(command_line, signal.SIGKILL)
    started.with_suffix(".go").touch()  # the job ends; its outcome has nobody to go to
    err = finish(proc, timeout=60).stderr
    assert proc.returncode == 128 + signal.SIGKILL
    assert f"error: the command line's process (pid {command_line}) was ended by signal 9" in err


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="finds the command line's pid in /proc")
def test_killing_the_started_process_ends_the_command_line_too(tmp_path) -> None:
    proc, _ = _waiting_job(tmp_path)
    (command_line,) = _children(proc.pid)
    proc.send_signal(signal.SIGKILL)
    finish(proc, timeout=60)  # the pipes close once the command line has ended too
    deadline = time.monotonic() + 10
    while _alive(command_line) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(command_line)


def test_ctrl_c_interrupts_the_job_and_the_command_ends_as_interrupted(tmp_path) -> None:
    proc, _ = _waiting_job(tmp_path, start_new_session=True)  # its own process group, as a terminal's job
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: both processes get it
    err = finish(proc, timeout=60).stderr
    assert proc.returncode == 128 + signal.SIGINT
    assert "KeyboardInterrupt" in err and "raised in the job's process" in err
    assert "ended by signal" not in err  # the interrupt is told once, by the command line


def test_the_switch_off_runs_one_process(tmp_path) -> None:
    facts = tmp_path / "facts.json"
    res = _run(
        _app("where_app", facts, tmp_path / "r"),
        tmp_path,
        split="0",
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads(facts.read_text())["hydra"] is True  # the job ran beside Hydra


def test_the_command_runs_from_another_folder_with_the_split(tmp_path) -> None:
    res = _run([*TINY_OVERRIDES, "plots=false", "hydra.run.dir=out"], tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert (tmp_path / "out" / "summary.csv").exists()

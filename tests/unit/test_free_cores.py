"""How `backend=processes` counts the cores free: its own start-up is not another process's load."""

from __future__ import annotations

import math
import os

import pytest

from sim.backends import processes
from sim.backends.processes import free_cores

pytestmark = pytest.mark.unit


@pytest.fixture
def machine(monkeypatch):
    """A machine of `cores` cores, the load average `load`, this process `age` seconds old, no quota."""

    def set_(cores: int, load: float, age: float, quota: float | None = None, busy: float | None = None) -> None:
        monkeypatch.setattr(processes, "_busy_elsewhere", lambda sample_s: busy)  # None: no /proc/stat
        monkeypatch.setattr(processes.os, "sched_getaffinity", lambda pid: set(range(cores)))
        monkeypatch.setattr(processes.os, "getloadavg", lambda: (load, load, load))
        monkeypatch.setattr(processes, "_age_s", lambda: age)
        monkeypatch.setattr(processes, "_cgroup_quota", lambda: quota)

    return set_


@pytest.mark.parametrize(
    ("cores", "load", "age", "quota", "want"),
    [
        (2, 1.41, 600.0, None, 2),  # the run's own process is the load: both cores are free
        (2, 1.0, 10.0, None, 1),  # 10 s old, the run explains 0.15 of it: another job holds a core
        (2, 0.2, 10.0, None, 2),  # an idle machine
        (2, 3.0, 600.0, None, 1),  # two other jobs: at least one worker all the same
        (16, 4.0, 600.0, None, 13),
        (16, 0.0, 1.0, 4.0, 4),  # a container's quota of 4 CPUs caps what the affinity says
    ],
)
def test_without_proc_stat_the_load_average_less_this_runs_share(machine, cores, load, age, quota, want) -> None:
    machine(cores, load, age, quota)
    n, why = free_cores()
    assert n == want
    assert f"{min(cores, int(quota or cores))} cores, load {load:.2f}" in why
    assert f"this run {1 - math.exp(-age / 60):.2f}" in why


@pytest.mark.parametrize(
    ("cores", "busy", "quota", "want"),
    [
        (2, 0.02, None, 2),  # idle now, whatever the load average still remembers
        (2, 0.97, None, 1),  # another job holds a core
        (2, 2.0, None, 1),  # at least one
        (16, 3.4, None, 13),
        (16, 0.0, 4.0, 4),
    ],
)
def test_workers_are_the_cores_less_those_other_processes_keep_busy_now(machine, cores, busy, quota, want) -> None:
    machine(cores, load=5.0, age=1.0, quota=quota, busy=busy)  # a stale load average: not used
    n, why = free_cores()
    assert n == want
    assert why == f"{min(cores, int(quota or cores))} cores, {busy:.2f} of them busy with other processes"


def test_a_process_busy_beside_us_is_seen() -> None:
    """Measured on this machine: a process spinning for the sample is about a core busy elsewhere."""
    import subprocess
    import sys

    idle = processes._busy_elsewhere(0.3)
    spin = subprocess.Popen([sys.executable, "-c", "import time; t = time.time() + 3\nwhile time.time() < t: pass"])
    try:
        busy = processes._busy_elsewhere(0.5)
    finally:
        spin.kill()
        spin.wait()
    if idle is None:  # no /proc/stat (not Linux)
        assert busy is None
        return
    assert busy >= min(idle + 0.5, (os.cpu_count() or 1) - 0.3)  # (all cores already busy: as many)


def test_age_and_quota_read_this_machine() -> None:
    assert processes._age_s() >= 0.0  # /proc on Linux; 0 elsewhere
    quota = processes._cgroup_quota()
    assert quota is None or quota > 0

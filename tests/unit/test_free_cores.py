"""How `backend=processes` counts the cores free: its own start-up is not another process's load."""

from __future__ import annotations

import math

import pytest

from sim.backends import processes
from sim.backends.processes import free_cores

pytestmark = pytest.mark.unit


@pytest.fixture
def machine(monkeypatch):
    """A machine of `cores` cores, the load average `load`, this process `age` seconds old, no quota."""

    def set_(cores: int, load: float, age: float, quota: float | None = None) -> None:
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
def test_workers_are_the_cores_less_the_load_of_other_processes(machine, cores, load, age, quota, want) -> None:
    machine(cores, load, age, quota)
    n, why = free_cores()
    assert n == want
    assert f"{min(cores, int(quota or cores))} cores, load {load:.2f}" in why
    assert f"this run {1 - math.exp(-age / 60):.2f}" in why


def test_age_and_quota_read_this_machine() -> None:
    assert processes._age_s() >= 0.0  # /proc on Linux; 0 elsewhere
    quota = processes._cgroup_quota()
    assert quota is None or quota > 0

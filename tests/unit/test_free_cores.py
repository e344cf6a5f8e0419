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
        monkeypatch.setattr(processes, "_busy_elsewhere", lambda sample_s, since=None: busy)  # None: no /proc/stat
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


def test_readings_taken_earlier_fill_the_window_instead_of_a_wait(monkeypatch) -> None:
    """The job's set-up since the back end was made is the sample: only what is left of it is waited."""
    import time

    waits: list[float] = []
    monkeypatch.setattr(time, "sleep", waits.append)
    start = processes.cpu_readings()
    if start is None:  # no /proc/stat (not Linux)
        assert processes._busy_elsewhere(0.2, start) is None
        return
    busy, own, t = start
    assert processes._busy_elsewhere(0.2, (busy, own, t - 5.0)) is not None
    assert waits == [0.0]  # a window of 5 s already: no wait
    processes._busy_elsewhere(0.2)
    assert 0.19 < waits[-1] <= 0.2  # no earlier readings: the whole sample is waited


def test_the_back_end_counts_the_cores_when_it_first_needs_them(monkeypatch) -> None:
    calls: list = []
    monkeypatch.setattr(processes, "free_cores", lambda since=None: calls.append(since) or (3, "3 cores, 0.00 busy"))
    backend = processes.ProcessBackend(torch_threads=1)
    assert calls == []  # made: readings taken, nothing counted yet
    assert backend.num_workers == 3 and backend.num_workers == 3
    assert len(calls) == 1 and calls[0] == backend._since  # counted once, over the window since it was made
    stale = processes.ProcessBackend(torch_threads=1)
    if stale._since is not None:
        busy, own, t = stale._since
        stale._since = (busy, own, t - processes._WINDOW_MAX_S - 1)
        assert stale.num_workers == 3 and calls[-1] is None  # a window too long: counted afresh
    assert processes.ProcessBackend(torch_threads=1, workers=2).num_workers == 2 and len(calls) <= 2


def test_the_window_starts_at_the_command_s_start_when_that_is_recent(monkeypatch) -> None:
    """`python -m sim` takes a reading as it starts (`sim.cpu.note_start`): the back end's window
    spans the imports and the set-up, so forking the pool waits for nothing; a reading older
    than `_WINDOW_MAX_S` (a later job of a sweep) is not used: the window starts anew."""
    import time

    now = processes.cpu_readings()
    if now is None:  # no /proc/stat (not Linux)
        return
    busy, own, t = now
    recent, old = (busy, own, t - 1.0), (busy, own, t - processes._WINDOW_MAX_S - 1.0)
    monkeypatch.setattr(processes, "start_readings", lambda: recent)
    assert processes.ProcessBackend(torch_threads=1)._since == recent
    assert processes.ProcessBackend(torch_threads=1, workers=2)._since is None  # processes=N: nothing to count
    monkeypatch.setattr(processes, "start_readings", lambda: old)
    assert processes.ProcessBackend(torch_threads=1)._since[2] >= t
    monkeypatch.setattr(processes, "start_readings", lambda: None)  # `sim` as a library: no command start
    assert processes.ProcessBackend(torch_threads=1)._since[2] >= t
    waits: list[float] = []
    monkeypatch.setattr(time, "sleep", waits.append)
    assert processes._busy_elsewhere(0.2, recent) is not None and waits == [0.0]


def test_a_command_notes_its_start_once() -> None:
    from sim import cpu

    cpu.note_start()
    first = cpu.start_readings()
    cpu.note_start()
    assert cpu.start_readings() is first
    assert first is None or len(first) == 3

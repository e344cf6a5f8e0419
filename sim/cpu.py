"""The machine's CPU time against this process's own, read from /proc/stat: what the processes
back end counts the cores other processes keep busy from (`sim.backends.processes.free_cores`).

Torch-free, so that a command takes a first reading as it starts (`note_start`, from `python -m
sim` and the `edgesim` script): the back end's window then spans the command's start-up (the
imports, the composition, the job's set-up: ~1.4 s here) instead of a wait of its own before
the first fork (0.2 s, all of it on the critical path once nothing else fills it).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

__all__ = ["cpu_readings", "note_start", "start_readings"]

_start: tuple[float, float, float] | None = None


def cpu_readings() -> tuple[float, float, float] | None:
    """(the machine's busy CPU seconds from /proc/stat, this process's CPU seconds, a monotonic
    time) now; None without /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields)
    except (OSError, ValueError):
        return None
    busy = (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    return busy, time.process_time(), time.monotonic()


def note_start() -> None:
    """Take the command's first reading (once: a later call keeps the first)."""
    global _start
    if _start is None:
        _start = cpu_readings()


def start_readings() -> tuple[float, float, float] | None:
    """The command's first reading, None where none was taken (`sim` used as a library)."""
    return _start

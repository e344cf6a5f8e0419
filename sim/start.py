"""What a command does before it imports any library (`python -m sim`; the `edgesim` script,
`sim.script`).

`begin` pauses Python's cyclic collector (`sim.collector`), takes the first CPU reading
(`sim.cpu`) and, when the command will run a job, either splits it into two processes, the
job's importing torch while the command line imports Hydra and composes the config on another
core (`sim.split`: a single run, where two cores or more are free to it), or imports torch here
before anything else.

Why torch first: as torch is imported it registers some hundred operators of its own
(`torch.library.custom_op`), and each registration looks up the file it was made in through
`inspect`, whose module lookup walks every module loaded so far and resolves its file
(`os.path.realpath`) the first time it meets it. With Hydra, OmegaConf, numpy and the
simulator's settings loaded before torch, those lookups took 0.17 s of a two-round
`python -m sim` run on this machine; with torch first, 0.04 s (the lookup timed, 362 calls
either way), and the whole run went from 1.52 to 1.40 s (medians of 10, alternating; the same
CSVs; `docs/scale.md`, section 5).

A command that runs no job (`--help`, Hydra's `--cfg`, `--info`, shell completion: any flag but
`-m`/`--multirun`) neither splits nor imports torch here, and an unknown option of a config group
(`strategy=nosuch`) is refused before either; in one process, a setting that Hydra's composition
refuses (a key misspelt) waits for torch's import too (~0.8 s), as one refused by the job's checks
always did; split, the command line refuses it while the job's process is still importing.
"""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["CONF_DIR", "begin", "check_group_choices", "group_options", "runs_a_job"]

CONF_DIR = Path(__file__).resolve().parent / "conf"
GROUPS = ("fleet", "channel", "strategy", "dataset", "workload", "experiment")
SWEEP_FLAGS = ("-m", "--multirun")


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def check_group_choices(args: list[str]) -> None:
    """A one-line error for an unknown config-group option (`strategy=nosuch`), before
    Hydra's multi-line one; sweeps (`strategy=fedavg,fedprox`) are checked option by option."""
    for arg in args:
        key, eq, value = arg.lstrip("+~").partition("=")
        if not eq or key not in GROUPS:
            continue
        options = group_options(key)
        for choice in value.strip("[]").split(","):
            choice = choice.strip()
            if choice and not choice.startswith(("glob(", "choice(", "range(")) and choice not in options:
                from sim.console import fail

                fail(f"{key}={choice!r}: unknown option; allowed: {', '.join(options)}")


def runs_a_job(args: list[str]) -> bool:
    """Whether the command line `args` asks for a run or a sweep (no flag of Hydra's but `-m`)."""
    return not any(a.startswith("-") and a not in SWEEP_FLAGS for a in args)


def begin(args: list[str], *, may_split: bool = False) -> None:
    """The command's first steps, before its first import of a library (repeated calls: no-ops).
    `may_split` (the command's own entry points, not a caller in a process of its own): a single
    run may start as two processes (`sim.split`), this one going on as the command line without
    torch, its parent running the job."""
    from sim import collector, cpu, split

    collector.pause()  # until the job has imported torch: `sim.collector`
    cpu.note_start()  # the window the processes back end counts the cores free over: `sim.cpu`
    if runs_a_job(args) and "torch" not in sys.modules and not split.began():
        check_group_choices(args)  # an unknown option is refused without waiting for torch
        if may_split and split.wanted() and not any(a in SWEEP_FLAGS for a in args):  # a sweep: see `sim.split`
            split.split()  # returns in the command line's process: the job's imports torch
            return
        import torch  # noqa: F401  (first: see above)

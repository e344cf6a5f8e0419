"""What docs/make_results.py's table writers share: the registry of result blocks, the run
folders and their CSVs, and the cells' formats."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

BLOCKS: dict[str, dict[str, tuple[tuple[str, ...], Callable]]] = {
    "nonn": {},
    "nair": {},
    "mcpipe": {},
    "dream": {},
    "fedmax": {},
}


def block(guide: str, name: str, *needs: str) -> Callable:
    """Register the function that writes block `name` of docs/GUIDE.md from runs `needs`."""

    def register(render: Callable) -> Callable:
        BLOCKS[guide][name] = (needs, render)
        return render

    return register


class Runs:
    """The run folders by name, and their CSVs."""

    def __init__(self, folders: dict[str, Path]):
        self.folders = folders

    def csv(self, run: str, name: str) -> pd.DataFrame:
        return pd.read_csv(self.folders[run] / name)

    def job_folders(self, run: str) -> list[Path]:
        """A sweep's finished jobs' folders in Hydra's job order (a folder is named by its overrides)."""
        from sim.sweep import sweep_jobs

        return list(sweep_jobs(self.folders[run]).values())

    def job_csvs(self, run: str, name: str) -> list[pd.DataFrame]:
        """CSV `name` of every job of a sweep, in job order."""
        return [pd.read_csv(p / name) for p in self.job_folders(run)]

    def jobs(self, run: str) -> pd.DataFrame:
        """A sweep's summary.csv of every job, stacked in job order."""
        return pd.concat(self.job_csvs(run, "summary.csv"), ignore_index=True)

    def summary(self, run: str) -> pd.Series:
        return self.csv(run, "summary.csv").iloc[0]  # a single job's one row


def table(header: list, rows: list[list]) -> str:
    return "\n".join(
        [
            "| " + " | ".join(map(str, header)) + " |",
            "|" + "---|" * len(header),
            *("| " + " | ".join(map(str, row)) + " |" for row in rows),
        ]
    )


# the cells' formats
pct = lambda x: f"{100 * x:.1f}%"
ms = lambda seconds, digits=1: f"{1e3 * seconds:.{digits}f} ms"
num = lambda x: f"{round(x):,}"


def mean_sd(values: pd.Series, fmt: str = ".3f") -> str:
    """Mean ± sample standard deviation (n - 1)."""
    return f"{values.mean():{fmt}} ± {values.std():{fmt}}"


def beta_name(b: float) -> str:
    return f"1e{int(math.log10(b))}" if math.log10(b).is_integer() else f"{b:g}"


# --- the claim tables (issue 17): a paper's headline claims against five seeds on mnist5k ----
# one row per claim: the claim in our words, the paper's figure, ours (mean ± sd over the seeds),
# whether the shape holds (computed per seed), and why (hand-written, numbers from the runs)
HEADER = ["claim", "paper", "ours (mean ± sd, seeds {seeds}, mnist5k)", "same shape?", "why"]


def held(flags: Sequence[bool]) -> str:
    """'yes' when the shape holds on every seed, 'mostly' on more than half, else 'no'; and the count."""
    k, n = int(sum(bool(f) for f in flags)), len(flags)
    return f"{'yes' if k == n else 'mostly' if 2 * k > n else 'no'} ({k} of {n} seeds)"


def pm(values, scale: float = 100.0, digits: int = 1, unit: str = "%") -> str:
    """Mean ± sample sd of `values` times `scale`."""
    v = scale * pd.Series(values, dtype=float)
    return f"{v.mean():.{digits}f} ± {v.std():.{digits}f}{unit}"


def points(values) -> str:
    """A difference of accuracies in points, mean ± sd."""
    return pm(values, unit=" points")


def times(values, digits: int = 1) -> str:
    return pm(values, scale=1.0, digits=digits, unit="x")


def claims_table(seeds: Sequence[int], rows: list[list]) -> str:
    header = [h.format(seeds=", ".join(map(str, seeds))) for h in HEADER]
    return table(header, rows)


def per_job(frames: list[pd.DataFrame], pick) -> pd.Series:
    """`pick(frame)` of every job's frame, one value per seed."""
    return pd.Series([float(pick(f)) for f in frames])

"""What docs/make_results.py's table writers share: the registry of result blocks, the run
folders and their CSVs, and the cells' formats."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pandas as pd

BLOCKS: dict[str, dict[str, tuple[tuple[str, ...], Callable]]] = {"nonn": {}, "nair": {}, "mcpipe": {}, "dream": {}}


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

    def jobs(self, run: str) -> pd.DataFrame:
        """A sweep's summary.csv of every job, stacked in job order."""
        paths = sorted(self.folders[run].glob("*/summary.csv"), key=lambda p: int(p.parent.name))
        return pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)

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

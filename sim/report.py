"""Typed rows to CSV and plots. Every file is written whole or not at all (temp + rename)."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, is_dataclass
from pathlib import Path

import pandas as pd

__all__ = ["atomic_path", "frame", "plot_accuracy", "save_figure", "write_csv", "write_csvs", "write_json"]

FLOAT_FORMAT = "%.9g"


def frame(rows) -> pd.DataFrame:
    return pd.DataFrame([asdict(r) if is_dataclass(r) else dict(r) for r in rows])


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[str]:
    """Yield a temporary name beside `path`; on success it replaces `path` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_csv(df: pd.DataFrame, path: Path) -> Path:
    """Write `df` to `path` atomically, with a fixed float format (byte-stable)."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format=FLOAT_FORMAT, lineterminator="\n")
    return Path(path)


def write_csvs(out_dir: Path, tables: dict[str, pd.DataFrame]) -> list[Path]:
    """Write each `name -> table` as `out_dir/name` (atomically, fixed float format)."""
    return [write_csv(df, Path(out_dir) / name) for name, df in tables.items()]


def save_figure(fig, path: Path) -> Path:
    """Save a matplotlib figure atomically and byte-stably (no software stamp), then close it."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return Path(path)


def write_json(data: dict, path: Path) -> Path:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return Path(path)


def _label(row: pd.Series, keys: list[str]) -> str:
    return ", ".join(f"{k}={row[k]}" for k in keys)


def plot_accuracy(rounds: pd.DataFrame, label_keys: list[str], out_dir: Path, title: str = "") -> list[Path]:
    """accuracy_vs_round.png and accuracy_vs_time.png: one line per distinct `label_keys`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    groups = list(rounds.groupby(label_keys, sort=False, dropna=False)) if label_keys else [((), rounds)]
    for x, name, xlabel in (("round", "accuracy_vs_round.png", "round"),
                            ("sim_time_s", "accuracy_vs_time.png", "simulated time (s)")):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for _, g in groups:
            label = _label(g.iloc[0], label_keys) if label_keys else "run"
            ax.plot(g[x], g["accuracy"], marker=".", label=label)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test accuracy")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        written.append(save_figure(fig, Path(out_dir) / name))
    return written

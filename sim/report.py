"""Typed rows to CSV and plots. Every file is written whole or not at all (temp + rename,
`atomic_path`); a write that fails (disk full, no permission, a folder gone) is an `OutputError`
naming the file and the cause (`experiments.common.files`).

pandas is imported only by the functions that take or make a DataFrame: the federated job
writes its rows with `write_rows`, so a short run does not pay pandas' import.
"""

from __future__ import annotations

import csv
import io
import json
import numbers
from collections.abc import Iterable
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from experiments.common.files import OutputError, atomic_path

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "OutputError",
    "atomic_path",
    "channel_columns",
    "frame",
    "legend_below",
    "plot_accuracy",
    "save_figure",
    "write_csv",
    "write_csvs",
    "write_json",
    "write_rows",
    "write_text",
]

FLOAT_FORMAT = "%.9g"


def _as_dict(row) -> dict:
    """A row's cells by column: a dataclass's fields (shallow: a row's cells are plain values,
    and `asdict`'s deep copy cost ~0.1 ms a row), or a mapping as it is."""
    if is_dataclass(row):
        return {f.name: getattr(row, f.name) for f in fields(row)}
    return dict(row)


def channel_columns(c) -> dict:
    """The link settings every workload's summary.csv carries, by the same names (a `ChannelConfig`)."""
    return {
        "channel_model": c.model,
        "channel_mode": c.mode,
        "channel_ber": c.ber,
        "bandwidth_bps": c.bandwidth_bps,
        "latency_s": c.latency_s,
        "channel_medium": c.medium,
        "channel_links": c.links,
    }


def frame(rows) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame([_as_dict(r) for r in rows])


def _missing(v) -> bool:
    return v is None or (isinstance(v, numbers.Real) and v != v)  # None or NaN (of any float type)


def _cells(values: list) -> list[str]:
    """One column's cells, formatted as pandas formats the column it would infer for them:
    all integers -> digits; all booleans -> True/False; numbers with a float, NaN or None among
    them -> a float column (FLOAT_FORMAT, empty for missing); anything else -> str, empty for
    missing. A column of plain ints, floats, None (the rows' usual cells) is formatted without
    the abstract `numbers` checks, ~5x faster, to the same text (`_any_cells` is the rule)."""
    kinds = set(map(type, values))
    if not kinds <= _PLAIN_NUMBERS:
        return _any_cells(values)
    if kinds <= {int}:
        return [str(v) for v in values]
    if kinds <= _MISSING_ONLY and all(v is None or v != v for v in values):
        return [""] * len(values)
    return ["" if v is None or v != v else FLOAT_FORMAT % float(v) for v in values]


_PLAIN_NUMBERS = {int, float, type(None)}
_MISSING_ONLY = {float, type(None)}


def _any_cells(values: list) -> list[str]:
    """`_cells` for any values."""
    present = [v for v in values if not _missing(v)]
    if present and all(isinstance(v, bool) for v in present) and len(present) == len(values):
        return [str(v) for v in values]
    numeric = all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in present)
    if numeric and len(present) == len(values) and all(isinstance(v, numbers.Integral) for v in present):
        return [str(int(v)) for v in values]
    if numeric and present:
        return ["" if _missing(v) else FLOAT_FORMAT % float(v) for v in values]
    return ["" if _missing(v) else str(v) for v in values]


def write_rows(rows: Iterable, path: Path, columns: list[str] | None = None) -> Path:
    """Write rows (dataclasses or mappings) to `path` as CSV, atomically, without pandas: the
    same bytes as `write_csv(frame(rows), path)` (columns in order of first appearance, a
    missing key an empty cell). `columns` names the header when there are no rows."""
    dicts = [_as_dict(r) for r in rows]
    header = header_of(dicts, columns)
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            f.write(_lines([header], dicts, header))
    return Path(path)


def header_of(rows: Iterable, columns: list[str] | None = None) -> list[str]:
    """The header `write_rows(rows, path, columns)` writes."""
    names: dict[str, None] = dict.fromkeys(columns or [])
    for r in rows:
        names.update(dict.fromkeys(r if isinstance(r, dict) else _as_dict(r)))
    return list(names)


def append_rows(rows: Iterable, path: Path, header: list[str]) -> bool:
    """Append rows to the CSV `path` whose header is `header` (`header_of` the rows written), in
    one write of whole lines (a process killed at any moment leaves whole lines). Each column's
    cells are formatted from the appended rows alone (`write_rows` of the whole file may format a
    column that mixes integers and gaps differently). False, writing nothing, if a row has a
    column the header lacks."""
    dicts = [_as_dict(r) for r in rows]
    if any(k not in header for d in dicts for k in d):
        return False
    if dicts:
        with open(path, "a", newline="") as f:
            f.write(_lines([], dicts, header))
    return True


def _lines(head: list[list[str]], dicts: list[dict], header: list[str]) -> str:
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerows(head)
    out.writerows(zip(*(_cells([d.get(c) for d in dicts]) for c in header)))
    return buf.getvalue()


def write_csv(df: pd.DataFrame, path: Path) -> Path:
    """Write `df` to `path` atomically, with a fixed float format (byte-stable)."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format=FLOAT_FORMAT, lineterminator="\n")
    return Path(path)


def write_csvs(out_dir: Path, tables: dict[str, pd.DataFrame]) -> list[Path]:
    """Write each `name -> table` as `out_dir/name` (atomically, fixed float format)."""
    return [write_csv(df, Path(out_dir) / name) for name, df in tables.items()]


def save_figure(fig, path: Path) -> Path:
    """Save a matplotlib figure atomically and byte-stably (no software stamp), then close it;
    cropped to what it draws, a legend outside the axes included (`legend_below`)."""
    import matplotlib.pyplot as plt

    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, metadata={"Software": None}, bbox_inches="tight")
    finally:
        plt.close(fig)
    return Path(path)


def legend_below(fig, **kwargs) -> None:
    """The figure's one legend, below its axes: outside them, so that it hides no line, bar or
    marker wherever the data lie (`loc="best"` still covers some). Each label of every axes once,
    in order, in as many columns as the figure's width holds. Call it after `tight_layout`."""
    entries: dict = {}
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    if not entries:
        return
    longest = max(len(label) for label in entries)
    fits = int(fig.get_figwidth() * 72 // (4 * longest + 40))  # 7-point text: ~4 points a character
    fig.legend(
        list(entries.values()),
        list(entries),
        loc="upper center",
        bbox_to_anchor=(0.5, 0),
        ncol=max(1, min(len(entries), fits)),
        fontsize=7,
        frameon=False,
        borderaxespad=0.2,
        **kwargs,
    )


def write_text(text: str, path: Path) -> Path:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)
    return Path(path)


def write_json(data: dict, path: Path) -> Path:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return Path(path)


def _label(row, keys: list[str]) -> str:
    return ", ".join(f"{k}={row[k]}" for k in keys)


LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "x")

# x axis, file, label: accuracy against rounds, simulated time, the devices' energy and the bytes
# on the air (cumulative over the run's rounds)
ACCURACY_AXES = (
    ("round", "accuracy_vs_round.png", "round"),
    ("sim_time_s", "accuracy_vs_time.png", "simulated time (s)"),
    ("energy_cum_j", "accuracy_vs_energy.png", "devices' energy, cumulative (J)"),
    ("bytes_cum", "accuracy_vs_bytes.png", "bytes on the air, cumulative (MB)"),
)


def _styles(groups, label_keys: list[str]) -> list[dict]:
    """A style per line: colour from the first swept factor, line style from the second,
    marker from the third, so that each factor reads on its own."""
    values = [list(dict.fromkeys(g.iloc[0][k] for _, g in groups)) for k in label_keys[:3]]
    styles = []
    for _, g in groups:
        row, style = g.iloc[0], {"marker": "."}
        for i, k in enumerate(label_keys[:3]):
            idx = values[i].index(row[k])
            if i == 0:
                style["color"] = f"C{idx % 10}"
            elif i == 1:
                style["linestyle"] = LINESTYLES[idx % len(LINESTYLES)]
            else:
                style["marker"] = MARKERS[idx % len(MARKERS)]
        styles.append(style)
    return styles


def plot_accuracy(
    rounds, label_keys: list[str], out_dir: Path, title: str = "", target: float | None = None, line_keys=None
) -> list[Path]:
    """accuracy against round, simulated time, cumulative energy and cumulative bytes
    (accuracy_vs_*.png): a line per distinct `line_keys` (default `label_keys`; a sweep adds the
    job, so that jobs never join into one zigzag), labelled and styled by `label_keys`; the
    target accuracy as a dashed line. `rounds`: a DataFrame, or rows."""
    import matplotlib
    import pandas as pd

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    if not isinstance(rounds, pd.DataFrame):
        rounds = frame(rounds)
    keys = list(line_keys or label_keys)
    groups = list(rounds.groupby(keys, sort=False, dropna=False)) if keys else [((), rounds)]
    groups = [
        (k, g.assign(energy_cum_j=g["energy_j"].cumsum(), bytes_cum=(g["bytes_down"] + g["bytes_up"]).cumsum() / 1e6))
        for k, g in groups
    ]
    styles = _styles(groups, label_keys)
    written = []
    for x, name, xlabel in ACCURACY_AXES:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        seen = set()
        for (_, g), style in zip(groups, styles):
            label = _label(g.iloc[0], label_keys) if label_keys else "run"
            ax.plot(g[x], g["accuracy"], label=None if label in seen else label, markersize=4, **style)
            seen.add(label)
        if target is not None:
            ax.axhline(target, color="grey", linestyle="--", linewidth=1, label=f"target {target:g}")
        if x == "round":
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test accuracy")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        legend_below(fig)
        written.append(save_figure(fig, Path(out_dir) / name))
    return written


STATE_COLOURS = {
    "receive": "tab:blue",
    "compute": "tab:orange",
    "transmit": "tab:green",
    "offline": "lightgrey",
}


def plot_timeline(
    rows: list[dict], path: Path, title: str = "", max_devices: int = 40, max_rows: int = 600
) -> Path | None:
    """A Gantt chart of the timeline's device states (timeline.csv rows), over the first rows
    (`max_rows`) and devices (`max_devices`, in order of first activity): where each device's
    time went, and who waited for whom."""
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = rows[:max_rows]
    devices: list[str] = []
    for r in rows:
        if r["device"] not in devices and len(devices) < max_devices:
            devices.append(r["device"])
    fig, ax = plt.subplots(figsize=(9, 0.25 * len(devices) + 1.5))
    seen = set()
    for r in rows:
        if r["device"] not in devices:
            continue
        y = devices.index(r["device"])
        colour = STATE_COLOURS.get(r["state"], "tab:red")
        label = r["state"] if r["state"] not in seen else None
        seen.add(r["state"])
        ax.broken_barh([(r["start_s"], r["end_s"] - r["start_s"])], (y - 0.4, 0.8), color=colour, label=label)
    ax.set_yticks(range(len(devices)), devices, fontsize=6)
    ax.invert_yaxis()
    ax.set_xlabel("simulated time (s)")
    ax.set_ylabel("device")
    ax.set_title(title)
    fig.tight_layout()
    legend_below(fig)
    return save_figure(fig, path)

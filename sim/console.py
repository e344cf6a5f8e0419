"""What a run says on the console: a start line (the workload, what it compares, where its
outputs go) and a closing table of its headline results with the output folder, the same for
every workload. Plain lines, on stdout; the progress bars are each workload's, on stderr; and
the one-line `error:` that ends a refused or failed run (`fail`, `faults_reported`)."""

from __future__ import annotations

import contextlib
import fnmatch
import math
import sys
from pathlib import Path

from sim.config import Config, Workload

__all__ = ["fail", "faults_reported", "closing", "describe", "start_line"]

# per workload, the summary columns (fnmatch patterns) that the closing table shows
HEADLINES = {
    "federated": (
        "strategy",
        "final_accuracy",
        "best_accuracy",
        "rounds_run",
        "time_to_target_s",
        "sim_time_s",
        "active_energy_j",
        "bytes_up",
    ),
    "nonn": (
        "teacher_accuracy",
        "nonn_accuracy",
        "kd_student_accuracy",
        "atkd_student_accuracy",
        "nonn_latency_s",
        "speedup_vs_split",
    ),
    "nair": ("method", "accuracy_overall", "accuracy_at_*", "payload_bytes", "transfer_s"),
    "mcpipe": (
        "model",
        "workers",
        "schedule",
        "final_accuracy",
        "time_to_target_s",
        "max_peak_total_bytes",
        "theorem1_bytes",
    ),
    "dream": ("teacher_test_accuracy", "accuracy_*", "metadata_bytes", "generate_s", "distill_s"),
    "offload": ("mode", "accuracy", "delivered_fraction", "mean_latency_s", "mean_device_energy_j"),
}


def describe(cfg: Config, uses: frozenset[str]) -> str:
    """The run in a phrase: workload, what runs, data, seed (the report's and the plots' title)."""
    name = cfg.workload.name
    parts = [name]
    if name == "federated":
        app = cfg.workload.app
        if app.server or app.client:
            parts.append(f"app {app.path or ''} {app.server} / {app.client}".replace("  ", " "))
        else:
            parts.append(", ".join(cfg.compare) if cfg.compare else cfg.strategy.name)
        parts.append(f"{cfg.fleet.num_devices} devices")
    if "dataset" in uses and not (name == "federated" and (cfg.workload.app.server or cfg.workload.app.client)):
        parts.append(f"{cfg.dataset.name}" + (f" ({cfg.dataset.partition})" if name == "federated" else ""))
    if "channel" in uses:
        c = cfg.channel
        parts.append(f"{c.bandwidth_bps / 1e6:g} Mbit/s {c.mode} BER {c.ber:g}")
    parts.append(f"seed {cfg.seed}")
    if cfg.torch_device != "cpu":  # where it computed (the figures are the same on the CPU)
        parts.append(f"on {cfg.torch_device}")
    return ", ".join(parts)


def say(text: str) -> None:
    """`text` on stdout, and into the run's log file when Hydra keeps one (its file handlers
    only: Hydra's console handler would print it a second time)."""
    import logging

    print(text, flush=True)
    record = logging.LogRecord("edgesim", logging.INFO, __file__, 0, text, None, None)
    for h in logging.getLogger().handlers:
        if isinstance(h, logging.FileHandler):
            h.handle(record)


def start_line(title: str, out_dir: Path | str) -> None:
    say(f"edgesim: {title} -> {Path(out_dir).resolve()}")


def closing(workload: Workload, summary, out_dir: Path | str) -> None:
    """The headline columns of the job's summary rows, then where everything was written."""
    rows = summary.to_dict("records") if hasattr(summary, "to_dict") else list(summary or [])  # DataFrame or dicts
    names = list(dict.fromkeys(k for row in rows for k in row))
    patterns = HEADLINES.get(workload.name, ())
    cols = list(dict.fromkeys(c for p in patterns for c in names if fnmatch.fnmatchcase(c, p)))
    if cols and rows:
        say(text_table(rows, cols))
    say(f"outputs: {Path(out_dir).resolve()}")


def text_table(rows: list[dict], cols: list[str]) -> str:
    """`rows` as a right-aligned plain-text table of `cols` (numbers to 4 significant digits;
    written here so that a run's path needs no pandas)."""

    def cell(v) -> str:
        if isinstance(v, float):
            return "NaN" if math.isnan(v) else f"{v:.4g}"
        return "" if v is None else str(v)

    cells = [[cell(row.get(c)) for c in cols] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(cols)]
    return "\n".join("  ".join(v.rjust(w) for v, w in zip(line, widths)) for line in [cols, *cells])


class Progress:
    """A job's progress: on a terminal a live bar that stays when done, its latest figures beside
    it; otherwise (a file, a pipe, a CI log) one plain line per step. Silent when not `enabled`."""

    def __init__(self, name: str, total: float | None, unit: str, enabled: bool, bar_format: str | None = None):
        import sys

        self.name, self.total, self.unit, self.enabled, self.n = name, total, unit, enabled, 0.0
        self.tty = enabled and sys.stderr.isatty()
        self.bar = None  # off a terminal no bar: a disabled tqdm still makes a multiprocessing lock (a semaphore)
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=name, unit=unit, leave=True, bar_format=bar_format)

    def to(self, n: float, **shown) -> None:
        """Advance to `n` done (never back) and show `shown` (name -> text)."""
        import sys

        step, self.n = max(0.0, n - self.n), max(self.n, n)
        text = ", ".join(f"{k} {v}" for k, v in shown.items())
        if self.tty:
            self.bar.update(step)
            self.bar.set_postfix_str(text, refresh=True)
        elif self.enabled and step > 0:
            of = "" if self.total is None else f"/{self.total:g}"
            print(f"{self.name}: {self.n:g}{of} {self.unit}s, {text}", file=sys.stderr, flush=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()


def fail(message: str, status: int = 2) -> None:
    """End with `error: MESSAGE`, one line on stderr: status 2 for a setting the user must
    change (nothing has run), 1 for a fault while running (a write, the back end)."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(status)


@contextlib.contextmanager
def faults_reported():
    """Inside, a fault while running ends the run with its one line and exit status 1, no
    traceback: an output that cannot be written (`OutputError`: the file, and why: disk full,
    no permission, a folder gone; what was on disk before stays whole) or a back end that
    failed (`BackendFailure`: a Ray worker or raylet that died). Hydra prints anything else
    it catches as a traceback, so every way into a run (the job, the sweep's comparison) goes
    through here."""
    from experiments.common.files import OutputError
    from sim.faults import BackendFailure

    try:
        yield
    except (OutputError, BackendFailure) as exc:
        fail(str(exc), status=1)

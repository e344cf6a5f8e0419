"""One self-contained HTML page per run (report.html) and per sweep: the run's description, its
headline tables (every summary.csv and comparison.csv it wrote), every plot it drew (embedded,
so the page can be mailed or archived alone) and the settings that ran. Built from the files
the job wrote, after it wrote them: what the page shows is what the CSVs hold."""

from __future__ import annotations

import base64
import csv
import dataclasses
import html
import math
from pathlib import Path

from sim import yamltext
from sim.config import Config
from sim.report import write_text

__all__ = ["settings_text", "write_page", "write_run_report", "write_sweep_report"]

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.85em; display: block; overflow-x: auto; }
th, td { border: 1px solid #ddd; padding: 3px 6px; text-align: right; white-space: nowrap; }
th { background: #f4f4f4; position: sticky; top: 0; }
img { max-width: 100%; margin: 0.5em 0; border: 1px solid #eee; }
pre { background: #f8f8f8; padding: 1em; font-size: 0.8em; overflow-x: auto; }
"""


def _cell(text: str) -> str:
    """A CSV field as the page shows it: whole numbers as they are, other numbers to 6
    significant digits, NaN blank."""
    try:
        int(text)
        return text
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return html.escape(text)
    return "" if math.isnan(value) else f"{value:.6g}"


def _table(path: Path, root: Path) -> str:
    """The CSV at `path` as an HTML table (the csv module: no pandas on a run's path)."""
    with path.open(newline="") as f:
        header, *rows = list(csv.reader(f)) or [[]]
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "\n".join("<tr>" + "".join(f"<td>{_cell(c)}</td>" for c in row) + "</tr>" for row in rows)
    caption = html.escape(str(path.relative_to(root)))
    return f"<h3>{caption}</h3>\n<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def _image(path: Path, root: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    name = html.escape(str(path.relative_to(root)))
    return f'<figure><img alt="{name}" src="data:image/png;base64,{data}"><figcaption>{name}</figcaption></figure>'


def write_page(root: Path | str, title: str, settings: str | None, tables: list[Path], plots: list[Path]) -> Path:
    """`root`/report.html: `title`, the CSV `tables`, the PNG `plots` (paths under `root`) and
    the `settings` as YAML text."""
    root = Path(root)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>Outputs in <code>{html.escape(str(root.resolve()))}</code>.</p>",
    ]
    if tables:
        parts += ["<h2>Results</h2>", *(_table(p, root) for p in tables)]
    if plots:
        parts += ["<h2>Plots</h2>", *(_image(p, root) for p in plots)]
    if settings:
        parts += ["<h2>Settings</h2>", f"<pre>{html.escape(settings)}</pre>"]
    parts.append("</body></html>")
    return write_text("\n".join(parts) + "\n", root / "report.html")


def settings_text(cfg: Config) -> str:
    """The settings that ran, as report.html shows them (and a run's `config.yaml`: `sim.yamltext`)."""
    return yamltext.dump(dataclasses.asdict(cfg), sort_keys=False, default_flow_style=None, width=100)


def write_run_report(cfg: Config, title: str, out_dir: Path | str) -> Path:
    """report.html of one run: its summaries and comparison, its plots, its settings."""
    root = Path(out_dir)
    if (root / "comparison.csv").exists():  # the compared strategies' summaries, one row each
        tables = [root / "comparison.csv"]
    else:
        tables = sorted(root.rglob("summary.csv"), key=lambda p: (len(p.parts), str(p)))
    plots = sorted(root.rglob("*.png"), key=lambda p: (len(p.parts), str(p)))
    return write_page(root, f"edgesim: {title}", settings_text(cfg), tables, plots)


def write_sweep_report(sweep_dir: Path | str, jobs: list[Path]) -> Path:
    """report.html of a sweep: the comparison of every job, the sweep's plots, and a link to
    each job's own report."""
    root = Path(sweep_dir)
    tables = [root / "comparison.csv"] if (root / "comparison.csv").exists() else []
    plots = sorted(root.glob("*.png"))
    page = write_page(root, f"edgesim sweep: {len(jobs)} jobs", None, tables, plots)
    links = "".join(
        f'<li><a href="{html.escape(j.relative_to(root).as_posix())}/report.html">'
        f"job {html.escape(j.relative_to(root).as_posix())}</a></li>"
        for j in jobs
        if (j / "report.html").exists()
    )
    if links:
        write_text(page.read_text().replace("</body>", f"<h2>Jobs</h2><ul>{links}</ul></body>"), page)
    return page

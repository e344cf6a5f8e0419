"""report.html as a browser shows it: a sweep of real federated jobs runs, then headless Chromium
opens a job's page and the sweep's page. What it rendered (read back from the DOM after load: the
table cells, each image decoded with its natural size, where each lies on the page) must be what
the run wrote (comparison.csv, the PNGs), and a screenshot of the whole page must show the table and
every plot where the page put them, not blank space.

Chromium is required (`apt-get install chromium`; .ci/run installs it): without it these tests
fail, unless EDGESIM_NO_BROWSER=1 says to skip them."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ..conftest import finish, start_sim

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
WIDTH = 1280
# offline and quiet: no background connections (refused on a closed network), no GPU, as root
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
]
# run in the page once it has loaded: what it shows, as JSON in a <pre> the DOM dump carries
PROBE = """<script>
addEventListener('load', () => {
  const box = e => { const b = e.getBoundingClientRect();
    return [b.left + scrollX, b.top + scrollY, b.width, b.height].map(Math.round); };
  const shown = {
    height: document.documentElement.scrollHeight,
    images: [...document.images].map(i => ({alt: i.alt, complete: i.complete,
      size: [i.naturalWidth, i.naturalHeight], box: box(i)})),
    tables: [...document.querySelectorAll('table')].map(t => ({box: box(t),
      rows: [...t.rows].map(r => [...r.cells].map(c => c.textContent.trim()))})),
    links: [...document.links].map(a => a.getAttribute('href')),
  };
  const out = document.createElement('pre');
  out.id = 'edgesim-probe';
  out.textContent = JSON.stringify(shown);
  document.body.append(out);
});
</script>"""


@pytest.fixture(scope="module")
def browser() -> str:
    """Chromium's path (asked for first, so that a missing browser fails before any run)."""
    for name in BROWSERS:
        if path := shutil.which(name):
            return path
    if os.environ.get("EDGESIM_NO_BROWSER") == "1":
        pytest.skip("EDGESIM_NO_BROWSER=1: report.html not opened in a browser")
    pytest.fail(
        "no Chromium to open report.html in (looked for " + ", ".join(BROWSERS) + "): install it "
        "(apt-get install chromium), or set EDGESIM_NO_BROWSER=1 to skip the browser tests",
        pytrace=False,
    )


def _chromium(browser: str, profile: Path, *args: str) -> str:
    res = subprocess.run(
        [browser, *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


def render(browser: str, page: Path, work: Path) -> tuple[dict, np.ndarray]:
    """Open `page` in headless Chromium (`browser`), WIDTH px wide: what it shows (from the probe,
    run in a copy of the page beside it) and a screenshot of the whole page (an RGB array)."""
    probe = page.with_name(".probe-" + page.name)
    probe.write_text(page.read_text().replace("</head>", PROBE + "</head>", 1))
    try:
        dom = _chromium(browser, work / "profile", f"--window-size={WIDTH},1000", "--dump-dom", probe.as_uri())
    finally:
        probe.unlink()
    found = re.search(r'<pre id="edgesim-probe">(.*?)</pre>', dom, re.S)
    assert found, f"the page did not finish loading: {dom[-500:]}"
    shown = json.loads(html.unescape(found.group(1)))
    shot = work / "screenshot.png"
    _chromium(
        browser, work / "profile", f"--window-size={WIDTH},{shown['height']}", f"--screenshot={shot}", page.as_uri()
    )
    with Image.open(shot) as image:
        return shown, np.asarray(image.convert("RGB"))


def _colours(pixels: np.ndarray) -> int:
    """How many distinct colours the RGB `pixels` hold."""
    rgb = pixels.reshape(-1, 3).astype(np.uint32)
    return len(np.unique(rgb[:, 0] << 16 | rgb[:, 1] << 8 | rgb[:, 2]))


def check_table(shown_table: dict, csv: Path, shot: np.ndarray) -> None:
    """The rendered table is comparison.csv (header, a row per line, its figures as the page
    formats them), and the screenshot shows text where it lies."""
    table = pd.read_csv(csv)
    header, *rows = shown_table["rows"]
    assert header == list(table.columns)
    assert [r[header.index("strategy")] for r in rows] == table["strategy"].tolist()
    accuracy = [r[header.index("final_accuracy")] for r in rows]
    assert accuracy == [f"{v:.6g}" for v in table["final_accuracy"]] and all(a.startswith("0.") for a in accuracy)
    x, y, w, h = shown_table["box"]
    assert w > 300 and h > 20 * len(rows)
    area = shot[y : y + h, x : x + w]
    assert (area.mean(axis=2) < 100).sum() > 200, "no text where the table is"


def check_plots(shown: dict, root: Path, plots: list[Path], shot: np.ndarray) -> None:
    """Every PNG the job wrote is on the page, decoded at its own size, and the screenshot shows a
    plot (not blank space) where each lies."""
    assert sorted(i["alt"] for i in shown["images"]) == sorted(str(p.relative_to(root)) for p in plots)
    for img in shown["images"]:
        with Image.open(root / img["alt"]) as png:
            assert img["complete"] and img["size"] == list(png.size), img["alt"]
        x, y, w, h = img["box"]
        assert w >= min(img["size"][0], 600) and h > 100, img
        area = shot[y : y + h, x : x + w]
        assert _colours(area) > 50 and (area.mean(axis=2) < 200).mean() > 0.01, f"{img['alt']} shows blank"


TINY = ["workload.rounds=2", "workload.model=mlp", "fleet.num_devices=4", "progress=false"]


def _sim(folder: Path, *args: str) -> None:
    res = finish(start_sim([*args, *TINY], folder.parent))
    assert res.returncode == 0, res.stderr[-1500:]


@pytest.fixture(scope="module")
def run_folder(browser, tmp_path_factory) -> Path:
    """A run of FedAvg against FedProx for 2 rounds on 4 devices."""
    folder = tmp_path_factory.mktemp("run") / "r"
    _sim(folder, "compare=[fedavg,fedprox]", f"hydra.run.dir={folder}")
    return folder


@pytest.fixture(scope="module")
def sweep(browser, tmp_path_factory) -> Path:
    """A sweep of two such runs of FedAvg alone, seeds 0 and 1."""
    folder = tmp_path_factory.mktemp("sweep") / "s"
    _sim(folder, "-m", "seed=0,1", f"hydra.sweep.dir={folder}")
    return folder


def test_a_runs_report_shows_its_table_and_plots_in_a_browser(browser, run_folder, tmp_path) -> None:
    shown, shot = render(browser, run_folder / "report.html", tmp_path)
    assert shot.shape == (shown["height"], WIDTH, 3) and shown["height"] > 2000  # the whole page
    assert _colours(shot) > 500  # text, lines, anti-aliasing: not a blank page
    [table] = shown["tables"]
    check_table(table, run_folder / "comparison.csv", shot)
    plots = sorted(run_folder.rglob("*.png"))
    assert len(plots) == 6  # accuracy against round, time, energy and bytes; each strategy's timeline
    check_plots(shown, run_folder, plots, shot)


def test_a_sweeps_report_shows_its_table_plots_and_jobs_in_a_browser(browser, sweep, tmp_path) -> None:
    shown, shot = render(browser, sweep / "report.html", tmp_path)
    assert shot.shape == (shown["height"], WIDTH, 3) and _colours(shot) > 500
    [table] = shown["tables"]
    check_table(table, sweep / "comparison.csv", shot)
    assert [r[table["rows"][0].index("seed")] for r in table["rows"][1:]] == ["0", "1"]
    plots = sorted(sweep.glob("*.png"))
    assert len(plots) == 4
    check_plots(shown, sweep, plots, shot)
    assert shown["links"] == ["seed=0/report.html", "seed=1/report.html"]
    assert all((sweep / link).exists() for link in shown["links"])

"""What a user sees at the edges of a run: a `+key` that names no setting is refused, a refused
run leaves nothing behind, outputs get the permissions the umask gives, the console script."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from sim.report import write_csv

from ..conftest import sim_env

TINY = ["workload.rounds=1", "workload.model=mlp", "fleet.num_devices=4", "progress=false", "plots=false"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "+workload.round=5",
            "error: +workload.round=5: workload has no setting 'round'; did you mean workload.rounds?",
        ),
        ("+fleet.foo=1", "error: +fleet.foo=1: fleet has no setting 'foo'"),
        ("workload.rounds=0", "error: workload.rounds=0: must be >= 1"),
    ],
)
def test_a_refused_run_says_why_in_one_line_and_leaves_nothing(override: str, message: str, run_sim, tmp_path):
    res = run_sim(*TINY, override)
    assert res.returncode == 2 and res.stderr.strip().splitlines() == [message]
    assert list(tmp_path.iterdir()) == []  # no outputs/DATE/TIME/.hydra, no empty log


ROOT_DIR = Path(__file__).resolve().parents[2]


def test_open_dicts_stay_open(run_sim, tmp_path):
    res = run_sim(*TINY, "++workload.app.run_config.note=1", f"hydra.run.dir={tmp_path / 'r'}")
    assert res.returncode == 0, res.stderr[-1500:]


def test_outputs_get_the_mode_the_umask_gives(tmp_path):
    df = pd.DataFrame({"a": [1]})
    before = os.umask(0o027)
    try:
        write_csv(df, tmp_path / "x.csv")
    finally:
        os.umask(before)
    assert (tmp_path / "x.csv").stat().st_mode & 0o777 == 0o640
    write_csv(df, tmp_path / "y.csv")
    assert (tmp_path / "y.csv").stat().st_mode & 0o777 == 0o666 & ~before


def test_a_run_writes_readable_outputs(run_sim, tmp_path):
    res = run_sim(*TINY, f"hydra.run.dir={tmp_path / 'r'}")
    assert res.returncode == 0, res.stderr[-1500:]
    umask = os.umask(0)
    os.umask(umask)
    for path in (tmp_path / "r").glob("*.csv"):
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path.name


def test_edgesim_console_script_and_its_completion():
    script = shutil.which("edgesim", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("the package is not installed (pip install -e .): no console script")
    res = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "workload" in res.stdout
    env = {**os.environ, "COMP_LINE": "edgesim workload.ro", "COMP_POINT": "19"}
    res = subprocess.run([script, "-sc", "query=bash"], capture_output=True, text=True, timeout=120, env=env)
    assert "workload.rounds=" in res.stdout.split()


def test_help_piped_into_a_reader_that_stops_early_is_no_traceback():
    """`edgesim --help | head -5`: the reader closes the pipe; the help ends quietly, status 0."""
    with subprocess.Popen(
        [sys.executable, "-m", "sim", "--help"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT_DIR
    ) as proc:
        proc.stdout.readline()
        proc.stdout.close()  # as `head -1` does after its line
        err = proc.stderr.read().decode()
        code = proc.wait(timeout=120)
    assert code == 0, err
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


def test_the_console_names_the_run_and_its_outputs_and_reports_each_round(run_sim, tmp_path):
    out = tmp_path / "r"
    res = run_sim(
        "workload.rounds=2", "workload.model=mlp", "fleet.num_devices=4", "progress=true", f"hydra.run.dir={out}"
    )
    assert res.returncode == 0, res.stderr[-1500:]
    lines = res.stdout.strip().splitlines()
    assert lines[0] == f"edgesim: federated, fedavg, 4 devices, digits (iid), 1 Mbit/s arq BER 0, seed 0 -> {out}"
    assert lines[-1] == f"outputs: {out}"
    assert "final_accuracy" in lines[1]  # the closing table's header
    # not a terminal: a plain line per round, with the simulated clock and the accuracy
    rounds = [ln for ln in res.stderr.splitlines() if ln.startswith("fedavg: ")]
    assert [ln.split(",")[0] for ln in rounds] == ["fedavg: 1/2 rounds", "fedavg: 2/2 rounds"]
    assert all(" accuracy 0." in ln and ", t " in ln for ln in rounds) and "\r" not in res.stderr


def test_html_reports_of_a_run_and_a_sweep(run_sim, tmp_path):
    res = run_sim("-m", *TINY[:-1], "plots=true", "seed=0,1", f"hydra.sweep.dir={tmp_path / 's'}")
    assert res.returncode == 0, res.stderr[-1500:]
    job = (tmp_path / "s" / "seed=0" / "report.html").read_text()
    assert "<h1>edgesim: federated, fedavg, 4 devices, digits (iid), 1 Mbit/s arq BER 0, seed 0</h1>" in job
    assert "<th>final_accuracy</th>" in job and "data:image/png;base64," in job  # its timeline plot
    assert "num_devices: 4" in job  # the settings that ran
    sweep = (tmp_path / "s" / "report.html").read_text()
    assert "<th>seed</th>" in sweep and 'href="seed=1/report.html"' in sweep and "data:image/png;base64," in sweep


def test_each_log_line_once_on_the_console_and_in_the_run_log(run_sim, tmp_path):
    out = tmp_path / "r"
    res = run_sim(*TINY, "log_level=INFO", f"hydra.run.dir={out}")
    assert res.returncode == 0, res.stderr[-1500:]
    assert (res.stdout + res.stderr).count("[ROUND 1/1]") == 1  # Flower's line, not twice
    log = (out / "__main__.log").read_text()
    assert "[ROUND 1/1]" in log and "edgesim: federated, fedavg, 4 devices" in log and f"outputs: {out}" in log


def test_a_mix_on_the_command_line_is_the_fleet_that_runs(run_sim, tmp_path):
    """`fleet.mix={...}` replaces the fleet option's mix (Hydra alone merges it into that one),
    in each job of a sweep of mixes too: the summaries and saved settings hold exactly the mix given."""
    import yaml

    mixes = "{odroid_xu4:1},{rpi3_400mhz:3,cortex_m7_512kb:1}"
    res = run_sim("-m", *TINY, "fleet=mixed", f"fleet.mix={mixes}", f"hydra.sweep.dir={tmp_path / 's'}")
    assert res.returncode == 0, res.stderr[-1500:]
    table = pd.read_csv(tmp_path / "s" / "comparison.csv")
    assert table["fleet_mix"].tolist() == ["odroid_xu4=1", "rpi3_400mhz=3 cortex_m7_512kb=1"]
    for name, mix in [("odroid_xu4:1", {"odroid_xu4": 1.0}), ("rpi3_400mhz:3,cortex_m7_512kb:1", None)]:
        job = tmp_path / "s" / f"fleet.mix={{{name}}}"
        mix = mix or {"rpi3_400mhz": 3.0, "cortex_m7_512kb": 1.0}
        assert yaml.safe_load((job / "config.yaml").read_text())["fleet"]["mix"] == mix
        assert set(pd.read_csv(job / "clients.csv")["device"]) <= set(mix)


def test_the_console_script_takes_a_mix_whole(tmp_path):
    script = shutil.which("edgesim", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("the package is not installed (pip install -e .): no console script")
    args = [script, "+experiment=fedmax_noniid", "fleet.mix={odroid_xu4:1}", "--cfg", "job"]
    res = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=tmp_path, env=sim_env())
    assert res.returncode == 0, res.stderr[-1500:]
    assert "  mix:\n    odroid_xu4: 1.0\n  num_devices: 30\n" in res.stdout

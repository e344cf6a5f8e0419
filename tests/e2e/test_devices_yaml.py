"""Device profiles defined in the config (`devices.NAME`), used by name like a built-in one, and
checked like one."""

from __future__ import annotations

import pandas as pd
import pytest

FIELDS = "memory_bytes: 268435456, compute_w: 1.2, transmit_w: 0.8, receive_w: 0.6, idle_w: 0.3"
BOARD = "{flops_per_s: 5.0e8, " + FIELDS + "}"
TINY = ["workload.rounds=1", "workload.model=mlp", "fleet.num_devices=4", "progress=false", "plots=false"]


def test_a_yaml_profile_is_used_by_name(run_sim, tmp_path):
    out = tmp_path / "r"
    offload = ["+experiment=offload", "workload.images=12", "workload.epochs=2", "progress=false", "plots=false"]
    res = run_sim(*offload, f"devices.myboard={BOARD}", "workload.device=myboard", f"hydra.run.dir={out}")
    assert res.returncode == 0, res.stderr[-1500:]
    summary = pd.read_csv(out / "summary.csv").set_index("mode")
    assert set(summary["device"]) == {"myboard"}
    base = run_sim(*offload, f"hydra.run.dir={tmp_path / 'base'}")  # the default device, a Raspberry Pi 3
    assert base.returncode == 0, base.stderr[-1500:]
    pi = pd.read_csv(tmp_path / "base" / "summary.csv").set_index("mode")
    # on the device, latency follows the FLOP rate: 5e8 FLOP/s here against the Pi's own
    assert summary.loc["local", "mean_latency_s"] != pi.loc["local", "mean_latency_s"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("devices.myboard={flops_per_s: -1, " + FIELDS + "}", "error: devices.myboard: flops_per_s=-1: must be"),
        ("devices.myboard={bogus: 1, " + FIELDS + "}", "error: devices.myboard.bogus: no such field; allowed: "),
        (
            "devices.rpi3_400mhz={flops_per_s: 1, " + FIELDS + "}",
            "error: devices.rpi3_400mhz: 'rpi3_400mhz' is",
        ),
    ],
)
def test_a_bad_profile_is_one_line(extra, message, run_sim, tmp_path):
    res = run_sim(*TINY, extra)
    assert res.returncode == 2, res.stderr[-1500:]
    [line] = res.stderr.strip().splitlines()
    assert line.startswith(message)
    assert list(tmp_path.iterdir()) == []

"""The offload example end to end: `python -m sim +experiment=offload` as a user runs it, its
one-line errors, and byte-identical reruns."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from devices import CATALOGUE
from sim.config import ConfigError
from sim.jobs import default_config, refuse_unused, validate

pytestmark = pytest.mark.e2e

TINY = ["+experiment=offload", "workload.images=12", "workload.epochs=2", "progress=false", "plots=false"]


def _csvs(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.csv"))}


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """The tiny job twice: trained and cached, then again with no cache (trained again)."""
    from tests.conftest import finish, start_sim

    root = tmp_path_factory.mktemp("offload")
    outs = []
    for name, cache in (("first", root / "cache"), ("second", "null")):
        proc = finish(start_sim([*TINY, f"cache_dir={cache}", f"hydra.run.dir={root / name}"], root))
        assert proc.returncode == 0, proc.stderr[-2000:]
        outs.append(root / name)
    return outs


def test_offload_writes_results_summary_and_comparison(two_runs) -> None:
    out = two_runs[0]
    results, summary = pd.read_csv(out / "results.csv"), pd.read_csv(out / "summary.csv")
    assert list(results["mode"].unique()) == ["local", "offload"] and len(results) == 2 * 12
    assert list(summary["mode"]) == ["local", "offload"]
    assert (out / "comparison.csv").read_bytes() == (out / "summary.csv").read_bytes()
    local, offload = (summary.set_index("mode").loc[m] for m in ("local", "offload"))
    device = CATALOGUE["cortex_m7_512kb"]
    assert local["delivered_fraction"] == 1 and local["bytes_sent"] == 0
    assert local["mean_latency_s"] == pytest.approx(local["flops_per_inference"] / device.flops_per_s)
    assert offload["image_bytes"] == 64 and offload["bytes_sent"] > 0
    assert 0 <= offload["accuracy"] <= offload["delivered_fraction"] <= 1
    lost = results[~results["answered"]]
    assert not lost["correct"].any() and lost["latency_s"].isna().all()
    assert (summary["channel_medium"] == "dedicated").all()
    timeline = pd.read_csv(out / "timeline_offload.csv")
    assert list(timeline.columns) == ["device", "state", "start_s", "end_s"]
    assert set(timeline["device"]) == {"sensor", "server"} and (timeline["end_s"] > timeline["start_s"]).all()
    assert set(pd.read_csv(out / "timeline_local.csv")["state"]) == {"compute"}


def test_offload_reruns_are_byte_identical(two_runs) -> None:
    first, second = (_csvs(out) for out in two_runs)
    assert set(first) == {
        "results.csv",
        "summary.csv",
        "comparison.csv",
        "timeline_local.csv",
        "timeline_offload.csv",
    }
    assert first == second


def test_offload_bad_setting_exits_2_with_one_line(run_sim) -> None:
    proc = run_sim("+experiment=offload", "workload.images=0", "progress=false")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines() == ["error: workload.images=0: must be an integer >= 1"]


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("device", "nosuch", "workload.device='nosuch': allowed: "),
        ("period_s", 0.0, "workload.period_s=0.0: must be a positive number"),
        ("hidden", 1.5, "workload.hidden=1.5: must be an integer"),
    ],
)
def test_offload_settings_are_checked(setting, value, message) -> None:
    cfg = default_config("offload")
    setattr(cfg.workload, setting, value)
    with pytest.raises(ConfigError, match="^" + re.escape(message)):
        validate(cfg)


def test_offload_refuses_a_section_it_does_not_use() -> None:
    with pytest.raises(ConfigError, match="the offload workload does not use `fleet`"):
        refuse_unused(default_config("offload"), ["fleet.num_devices=3"])

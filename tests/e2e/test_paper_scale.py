"""The paper-scale experiments (nonn_cifar10, nair_cifar10, fedmax_cifar10) each run end to end,
shrunk, on a tiny folder of CIFAR-10's real python-batch format (the full runs need the data set
and hours; their set-ups are checked in tests/unit/test_configs.py)."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.unit.test_data import _write_cifar

SHRUNK = {
    "nonn_cifar10": [
        "workload.teacher_depth=10",
        "workload.teacher_width=0.5",
        "workload.teacher_epochs=1",
        "workload.student_depth=10",
        "workload.student_epochs=1",
        "workload.timing_images=2",
        "workload.beta_search=[100]",
        "workload.at_beta_search=[]",
        "workload.calibrate=false",
    ],
    "nair_cifar10": ["workload.epochs=1", "workload.retune_epochs=1", "workload.latencies_s=[0.05]"],
    "fedmax_cifar10": [
        "workload.rounds=1",
        "workload.local_epochs=1",
        "fleet.num_devices=10",
        "strategy.fraction_train=0.2",
    ],
}


@pytest.mark.parametrize("experiment", sorted(SHRUNK))
def test_runs_on_a_cifar10_folder(experiment: str, run_sim, tmp_path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar(folder, per_batch=20)
    out = tmp_path / "out"
    res = run_sim(
        f"+experiment={experiment}",
        f"dataset.path={folder}",
        *SHRUNK[experiment],
        "progress=false",
        "plots=false",
        f"cache_dir={tmp_path / 'cache'}",
        f"hydra.run.dir={out}",
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    summary = pd.read_csv(out / ("comparison.csv" if experiment.startswith("fedmax") else "summary.csv"))
    assert (summary["dataset"] == "cifar10").all()

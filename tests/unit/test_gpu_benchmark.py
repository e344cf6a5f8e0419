"""`benchmarks/gpu.py`'s verdict, on run folders written here (no GPU needed): a simulated column
that differs between `cpu` and `cuda` fails, a value column may differ, NoNN's simulated figures
follow a partition that followed the GPU's teacher, a rerun must be byte-identical; the
computations' own seconds are read from each workload's `wallclock.json`; the CIFAR-10-format
folder it writes for `--scale` is one the real loader reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import gpu
from experiments.common.data import load_cifar10

pytestmark = pytest.mark.unit


def _runs(root: Path, name: str, tables: dict[str, dict[str, str]], clock: dict | None = None) -> None:
    """root/name/LABEL/FILE for each label's {file: csv text}."""
    for label, files in tables.items():
        folder = root / name / label
        folder.mkdir(parents=True)
        for file, text in files.items():
            (folder / file).write_text(text)
        if clock is not None:
            (folder / "wallclock.json").write_text(json.dumps(clock))


SAME = "round,sim_time_s,accuracy\n1,2.5,0.5\n"


def test_identical_runs_pass_and_report_their_seconds(tmp_path) -> None:
    _runs(
        tmp_path,
        "federated",
        {k: {"rounds.csv": SAME} for k in ("cpu", "cuda", "cuda_again")},
        {"wall_s": {"a": 1.25, "b": 2.0}},
    )
    r = gpu.judge("federated", tmp_path, {"failures": []})
    assert r["ok"] and r["simulated"] == r["values"] == r["rerun_differs"] == []
    assert r["compute_s"] == {"cpu": 3.25, "cuda": 3.25, "cuda_again": 3.25}


def test_a_value_column_may_differ_a_simulated_one_may_not(tmp_path) -> None:
    value = "round,sim_time_s,accuracy\n1,2.5,0.75\n"
    _runs(tmp_path, "a", {"cpu": {"rounds.csv": SAME}, "cuda": {"rounds.csv": value}})
    r = gpu.judge("a", tmp_path, {"failures": []})
    assert r["ok"] and r["values"] == ["rounds.csv:accuracy: largest difference 0.25"] and "rerun_differs" not in r
    timed = "round,sim_time_s,accuracy\n1,2.625,0.5\n"
    _runs(tmp_path, "b", {"cpu": {"rounds.csv": SAME}, "cuda": {"rounds.csv": timed}})
    r = gpu.judge("b", tmp_path, {"failures": []})
    assert not r["ok"] and r["simulated"] == ["rounds.csv:sim_time_s: largest difference 0.125"]


def test_a_rerun_that_differs_fails(tmp_path) -> None:
    other = "round,sim_time_s,accuracy\n1,2.5,0.5000001\n"
    _runs(
        tmp_path, "a", {"cpu": {"rounds.csv": SAME}, "cuda": {"rounds.csv": SAME}, "cuda_again": {"rounds.csv": other}}
    )
    assert not gpu.judge("a", tmp_path, {"failures": []})["ok"]


def test_nonn_figures_follow_a_partition_that_followed_the_teacher(tmp_path) -> None:
    cpu = {"partition.csv": "student,filters\n0,10\n", "students.csv": "student,flops\n0,100\n"}
    cuda = {"partition.csv": "student,filters\n0,12\n", "students.csv": "student,flops\n0,120\n"}
    for name in ("nonn", "nonn_cifar10"):
        _runs(tmp_path, name, {"cpu": cpu, "cuda": cuda})
        r = gpu.judge(name, tmp_path, {"failures": []})
        assert (
            r["ok"]
            and r["structure_followed_values"]
            and r["simulated"] == ["students.csv:flops: largest difference 20"]
        )
    cuda_same_partition = {**cuda, "partition.csv": cpu["partition.csv"]}
    _runs(tmp_path, "nonn2", {"cpu": cpu, "cuda": cuda_same_partition})
    assert not gpu.judge("nonn2", tmp_path, {"failures": []})["ok"]  # only NoNN's partition excuses it, and not here


@pytest.mark.parametrize(
    ("clock", "seconds"),
    [
        ({"wall_s": {"total_s": 5.0, "training_s": 3.0}}, 5.0),  # NAIR: the total holds the phases
        ({"wall_s_per_strategy": {"fedavg": 1.0, "fedmax": 0.5}}, 1.5),
        ({"wall_s_per_run": {"fc/2/local": 0.25}}, 0.25),
        ({"backend": "local"}, None),
    ],
)
def test_compute_seconds_reads_each_workloads_wallclock(tmp_path, clock, seconds) -> None:
    (tmp_path / "wallclock.json").write_text(json.dumps(clock))
    assert gpu.compute_seconds(tmp_path) == seconds
    assert gpu.compute_seconds(tmp_path / "nowhere") is None


def test_the_scale_folder_is_cifar10_to_the_real_loader(tmp_path) -> None:
    data = load_cifar10(gpu.write_cifar_like(tmp_path / "c", 6))
    assert data.x_train.shape == (30, 3, 32, 32) and data.x_test.shape == (6, 3, 32, 32)
    assert 0.0 <= float(data.x_train.min()) and float(data.x_train.max()) <= 1.0
    assert set(data.y_train.tolist()) <= set(range(10))

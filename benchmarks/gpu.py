"""`torch_device=cuda` against `cpu`: every workload run small on both, the CSVs compared, the wall
times reported.

    python benchmarks/gpu.py [--only NAME ...] [--out DIR] [--json PATH] [--no-rerun] [--scale N]

Without CUDA (`torch.cuda.is_available()` False) it says so and exits 0: there is nothing to compare.

With it, each workload runs as a user would run it (`python -m sim ... torch_device=DEVICE`, its own
model cache per run, so every model is trained on that device): on `cpu`, on `cuda`, and on
`cuda` again. Then, file by file and column by column:

- the simulated columns (times, energies, FLOPs, bytes, memory, retransmissions, flipped bits,
  statuses, the timelines) must be identical: what the simulation charges is counted, not
  measured on the hardware, so the device must not change it;
- the columns derived from the trained weights' values (accuracy, loss, activation divergence,
  NAIR's importances, NoNN's partition and weight choices, the offload classifier's answers)
  may differ in their last bits (a GPU's kernels round differently); their largest difference
  is reported. NoNN's partition follows the teacher's activations: where the GPU's teacher
  partitions differently, the students' sizes follow, and their simulated figures are reported
  but not held to the CPU's;
- the second `cuda` run must give the first's CSVs byte for byte (the job switches CUDA's
  deterministic kernels on; torch warns where an operation has none).

`--scale N` adds the two CIFAR-10 experiments at the paper's network sizes (`nair_cifar10`, its
MobileNetV2-style network on 32x32 colour images; `nonn_cifar10`, a WRN-40-4 teacher and
WRN-16-2-sized students), one epoch each, on a CIFAR-10-format folder it writes of 5 x N training
and N test images: learnable synthetic classes (`make_synthetic`, class prototypes plus noise,
quantised to bytes), since no CIFAR-10 can be downloaded here. They measure what the device does to
the wall time of networks of the papers' size; their accuracies say nothing about CIFAR-10. They
run once per device (no rerun) and their comparison is reported like the others'.

Exit status 1 if a simulated column differs or a rerun does; the wall seconds of every run are
reported (the start of `python -m sim` included), and the last line is `RESULT {json}`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import finish, load_note  # noqa: E402

FEDERATED = ["workload.model=cnn", "fleet.num_devices=10", "workload.rounds=3", "workload.local_epochs=1"]
RUNS = {
    "federated": [*FEDERATED, "compare=[fedavg,fedmax,fedprox]"],
    "vectorize": [*FEDERATED, "workload.vectorize=true", "strategy=fedprox"],
    "nonn": [
        "+experiment=nonn",
        *("workload.teacher_depth=10", "workload.teacher_width=0.5", "workload.teacher_epochs=2"),
        *("workload.student_depth=10", "workload.student_epochs=2", "workload.num_students=3"),
        *("workload.timing_images=4", "workload.memory_budget_bytes=20000", "workload.flop_budget=1e6"),
        *("workload.beta_search=[100]", "workload.at_beta_search=[]", "workload.calibrate=false"),
    ],
    "nair": [
        "+experiment=nair",
        *("workload.epochs=2", "workload.retune_epochs=1", "workload.train_samples=300", "workload.test_samples=60"),
        *("workload.corruption_rates=[0.5]", "channel.mode=raw", "channel.ber=1e-4"),
    ],
    "mcpipe": [
        "+experiment=mcpipe",
        *(
            "workload.workers=[2]",
            "workload.sim_time_s=0.2",
            "workload.eval_every_s=0.05",
            "workload.accuracy_at_s=0.1",
        ),
        *("channel.mode=raw", "channel.ber=1e-6"),
    ],
    "dream": [
        "+experiment=dream",
        *("workload.teacher_epochs=2", "workload.images=100", "workload.steps=10", "workload.student_epochs=2"),
        "workload.student_widths=[0.25]",
    ],
    "offload": ["+experiment=offload", "workload.images=40", "workload.epochs=5", "channel.ber=1e-3"],
}

# the papers' CIFAR-10 networks, one epoch each, on the folder `--scale` writes (`{cifar}`)
SCALE_RUNS = {
    "nair_cifar10": [
        "+experiment=nair_cifar10",
        *("workload.epochs=1", "workload.retune_epochs=1", "workload.corruption_rates=[0.5]"),
        "dataset.path={cifar}",
        "torch_threads=null",  # the CPU's baseline on all its cores: these networks are large enough to use them
    ],
    "nonn_cifar10": [
        "+experiment=nonn_cifar10",
        *("workload.teacher_epochs=1", "workload.student_epochs=1", "workload.baselines=false"),
        "workload.split_model=teacher",
        *("workload.beta_search=[100]", "workload.at_beta_search=[]", "workload.calibrate=false"),
        *("workload.timing_images=4", "dataset.path={cifar}", "torch_threads=null"),
    ],
}

# columns whose values come from the trained weights (may differ in their last bits on a GPU)
VALUE_COLUMNS = re.compile(
    r"accuracy|loss|divergence|model_finite|collapsed|to_target|activation_error|importance|share_|"
    r"sent_position|correct|answer|nonn_beta|atkd_beta|communities|modularity|p0_filters|partition_size|"
    r"^filters$|filter_ids|val_|pixel_mean|agreement|random_teacher"
)
# per workload: the file whose difference means the simulated structure itself followed the values
STRUCTURE = {"nonn": "partition.csv"}


def write_cifar_like(folder: Path, per_batch: int) -> Path:
    """A CIFAR-10 "python version" folder (data_batch_1..5, test_batch) of learnable synthetic
    32x32 colour images, `per_batch` in each file; returns the folder."""
    import pickle

    import numpy as np

    from experiments.common.data import make_synthetic

    data = make_synthetic(6 * per_batch, shape=(3, 32, 32), test_fraction=1 / 6, seed=0, noise=0.3)
    folder.mkdir(parents=True, exist_ok=True)

    def as_bytes(x) -> np.ndarray:
        return (np.clip(np.asarray(x), 0.0, 1.0) * 255).round().astype(np.uint8).reshape(len(x), 3072)

    x_tr, y_tr = as_bytes(data.x_train), np.asarray(data.y_train)
    for i in range(5):
        part = slice(i * per_batch, (i + 1) * per_batch)
        blob = {b"data": x_tr[part], b"labels": y_tr[part].tolist()}
        (folder / f"data_batch_{i + 1}").write_bytes(pickle.dumps(blob, protocol=2))
    blob = {b"data": as_bytes(data.x_test), b"labels": np.asarray(data.y_test).tolist()}
    (folder / "test_batch").write_bytes(pickle.dumps(blob, protocol=2))
    return folder


def run_one(
    name: str, device: str, folder: Path, runs: dict[str, list[str]] = RUNS, timeout: float | None = None
) -> tuple[float, str]:
    """`python -m sim` of workload `name` on `device` into `folder`: (wall seconds, '' or the
    failure; a run stopped after `timeout` seconds is a failure)."""
    args = [*runs[name], f"torch_device={device}", "progress=false", "plots=false"]
    args += [f"cache_dir={folder / '.cache'}", f"hydra.run.dir={folder}"]
    env = {**os.environ, "PYTHONHASHSEED": "0", "MPLBACKEND": "Agg", "FLWR_TELEMETRY_ENABLED": "0"}
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "sim", *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return round(time.perf_counter() - t0, 2), f"stopped after {timeout} s (--timeout)"
    wall = round(time.perf_counter() - t0, 2)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "run.log").write_text(proc.stdout + proc.stderr)
    return wall, "" if proc.returncode == 0 else f"exit {proc.returncode}: {proc.stderr.strip()[-300:]}"


def csv_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*.csv") if ".cache" not in p.parts)


def _largest_difference(a, b) -> str:
    """The largest absolute difference of two numeric columns, or how many cells differ."""
    import pandas as pd

    x, y = pd.to_numeric(a, errors="coerce"), pd.to_numeric(b, errors="coerce")
    if x.notna().any() and y.notna().any():
        return f"largest difference {float((x - y).abs().max()):.3g}"
    return f"{int((a.astype(str) != b.astype(str)).sum())} cells differ"


def compare(cpu: Path, gpu: Path) -> dict:
    """Per CSV of both runs: the simulated columns that differ, the value columns that differ (with
    their largest difference), and the files one run wrote and the other did not."""
    import pandas as pd

    left, right = csv_files(cpu), csv_files(gpu)
    out: dict = {"missing": sorted(set(left) ^ set(right)), "simulated": [], "values": []}
    for f in sorted(set(left) & set(right)):
        if (cpu / f).read_bytes() == (gpu / f).read_bytes():
            continue
        a, b = (
            pd.read_csv(cpu / f, dtype=str, keep_default_na=False),
            pd.read_csv(gpu / f, dtype=str, keep_default_na=False),
        )
        if list(a.columns) != list(b.columns) or len(a) != len(b):
            out["simulated"].append(f"{f}: different columns or rows ({len(a)} against {len(b)} rows)")
            continue
        for col in a.columns:
            if (a[col] != b[col]).any():
                kind = "values" if VALUE_COLUMNS.search(col) else "simulated"
                out[kind].append(f"{f}:{col}: {_largest_difference(a[col], b[col])}")
    return out


def compute_seconds(folder: Path) -> float | None:
    """The job's own wall seconds in its computations, from its `wallclock.json` (no interpreter
    start, imports or config): NAIR's `total_s`, else the sum of the phases (`wall_s`), of the
    strategies (`wall_s_per_strategy`) or of the runs (`wall_s_per_run`); None where the job
    writes none (offload)."""
    try:
        clock = json.loads((folder / "wallclock.json").read_text())
    except (OSError, ValueError):
        return None
    for key in ("wall_s", "wall_s_per_strategy", "wall_s_per_run"):
        if isinstance(clock.get(key), dict):
            phases = clock[key]
            return round(phases["total_s"] if "total_s" in phases else sum(phases.values()), 2)
    return None


def structure_of(name: str) -> str | None:
    """The file whose difference means the simulated structure followed the values (NoNN's
    partition, at either scale)."""
    return STRUCTURE.get(name.removesuffix("_cifar10"))


def judge(name: str, root: Path, result: dict) -> dict:
    """The verdict on workload `name`'s runs in `root/name/{cpu,cuda,cuda_again}`: the comparison,
    the rerun's (where there is one), the computations' own seconds."""
    folder = root / name
    labels = [label for label in ("cpu", "cuda", "cuda_again") if (folder / label).is_dir()]
    result["compute_s"] = {label: compute_seconds(folder / label) for label in labels}
    if result["failures"]:
        result["ok"] = False
        return result
    diff = compare(folder / "cpu", folder / "cuda")
    structure = structure_of(name)
    followed = structure is not None and any(line.startswith(f"{structure}:") for line in diff["values"])
    result.update(diff, structure_followed_values=followed)
    if "cuda_again" in labels:
        again = compare(folder / "cuda", folder / "cuda_again")
        result["rerun_differs"] = again["missing"] + again["simulated"] + again["values"]
    result["ok"] = not diff["missing"] and (followed or not diff["simulated"]) and not result.get("rerun_differs")
    return result


def check(name: str, root: Path, rerun: bool, runs: dict[str, list[str]] = RUNS, timeout: float | None = None) -> dict:
    """Workload `name` on cpu, cuda (and cuda again): timings, the comparison, and its verdict."""
    result: dict = {"wall_s": {}, "failures": []}
    labels = [("cpu", "cpu"), ("cuda", "cuda")] + ([("cuda_again", "cuda")] if rerun else [])
    for label, device in labels:
        wall, failure = run_one(name, device, root / name / label, runs, timeout)
        result["wall_s"][label] = wall
        if failure:
            result["failures"].append(f"{label}: {failure}")
    return judge(name, root, result)


def report(name: str, r: dict) -> None:
    walls = ", ".join(f"{k} {v:.1f} s" for k, v in r.get("wall_s", {}).items())
    inside = ", ".join(f"{k} {v:.1f} s" for k, v in r.get("compute_s", {}).items() if v is not None)
    print(f"\n== {name}: {'ok' if r['ok'] else 'FAILED'} (end to end: {walls or 'not timed'}; computations: {inside})")
    for line in r["failures"]:
        print(f"  run failed: {line}")
    for line in r.get("missing", []):
        print(f"  written by one run only: {line}")
    if r.get("structure_followed_values"):
        print(f"  {structure_of(name)} differs: the GPU's model partitioned differently; what follows it is not held")
    for line in r.get("simulated", []):
        print(f"  SIMULATED column differs: {line}")
    for line in r.get("values", []):
        print(f"  value column differs (allowed): {line}")
    for line in r.get("rerun_differs", []):
        print(f"  RERUN on cuda differs: {line}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="*", default=[], choices=sorted(RUNS), help="these workloads only")
    p.add_argument("--out", default=None, help="folder for the runs (default: a temporary one)")
    p.add_argument("--json", default=None, help="also write the result here")
    p.add_argument("--no-rerun", action="store_true", help="skip the second cuda run")
    p.add_argument("--scale", type=int, default=0, metavar="N", help="also the CIFAR-10 networks on 6 x N images")
    p.add_argument("--judge", default=None, metavar="DIR", help="judge runs already made in DIR (NAME/cpu, ...)")
    p.add_argument("--timeout", type=float, default=None, metavar="S", help="stop any one run after S seconds")
    args = p.parse_args(argv)
    if args.judge:  # runs made elsewhere (on a GPU machine), judged here: no device needed
        root, results = Path(args.judge), {}
        for folder in sorted(p for p in root.iterdir() if (p / "cpu").is_dir() and (p / "cuda").is_dir()):
            results[folder.name] = judge(folder.name, root, {"failures": []})
            report(folder.name, results[folder.name])
        ok = bool(results) and all(r["ok"] for r in results.values())
        finish({"judged": str(root), "ok": ok, "workloads": results}, args.json)
        return 0 if ok else 1
    import torch

    if not torch.cuda.is_available():
        print(
            "benchmarks/gpu.py: no CUDA device is available here (torch.cuda.is_available() is False): "
            "nothing to compare"
        )
        finish({"cuda": False}, args.json)
        return 0
    root = Path(args.out or tempfile.mkdtemp(prefix="edgesim-gpu-"))
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}; runs in {root}; load {load_note()}", flush=True)
    results: dict = {}
    head = {"cuda": True, "device": torch.cuda.get_device_name(), "torch": torch.__version__}

    def done(name: str, result: dict) -> None:
        results[name] = result
        report(name, result)
        if args.json:  # after each workload: what finished is kept if the rest is cut off
            Path(args.json).write_text(json.dumps({**head, "workloads": results}, indent=2))

    for name in args.only or list(RUNS):
        done(name, check(name, root, not args.no_rerun, timeout=args.timeout))
    if args.scale:
        cifar = str(write_cifar_like(root / "cifar10", args.scale))
        scale_runs = {k: [a.format(cifar=cifar) for a in v] for k, v in SCALE_RUNS.items()}
        for name in scale_runs:
            done(name, check(name, root, False, scale_runs, args.timeout))
    ok = all(r["ok"] for r in results.values())
    finish({**head, "ok": ok, "workloads": results}, args.json)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

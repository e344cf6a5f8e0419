"""`torch_device=cuda` against `cpu`: every workload run small on both, the CSVs compared, the wall
times reported.

    python benchmarks/gpu.py [--only NAME ...] [--out DIR] [--json PATH] [--no-rerun]

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

Exit status 1 if a simulated column differs or a rerun does; the wall seconds of every run are
reported (the start of `python -m sim` included), and the last line is `RESULT {json}`.
"""

from __future__ import annotations

import argparse
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

# columns whose values come from the trained weights (may differ in their last bits on a GPU)
VALUE_COLUMNS = re.compile(
    r"accuracy|loss|divergence|model_finite|collapsed|to_target|activation_error|importance|share_|"
    r"sent_position|correct|answer|nonn_beta|atkd_beta|communities|modularity|p0_filters|partition_size|"
    r"^filters$|filter_ids|val_"
)
# per workload: the file whose difference means the simulated structure itself followed the values
STRUCTURE = {"nonn": "partition.csv"}


def run_one(name: str, device: str, folder: Path) -> tuple[float, str]:
    """`python -m sim` of workload `name` on `device` into `folder`: (wall seconds, '' or the failure)."""
    args = [*RUNS[name], f"torch_device={device}", "progress=false", "plots=false"]
    args += [f"cache_dir={folder / '.cache'}", f"hydra.run.dir={folder}"]
    env = {**os.environ, "PYTHONHASHSEED": "0", "MPLBACKEND": "Agg", "FLWR_TELEMETRY_ENABLED": "0"}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "sim", *args], capture_output=True, text=True, env=env, cwd=ROOT)
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


def check(name: str, root: Path, rerun: bool) -> dict:
    """Workload `name` on cpu, cuda (and cuda again): timings, the comparison, and its verdict."""
    result: dict = {"wall_s": {}, "failures": []}
    labels = [("cpu", "cpu"), ("cuda", "cuda")] + ([("cuda_again", "cuda")] if rerun else [])
    for label, device in labels:
        wall, failure = run_one(name, device, root / name / label)
        result["wall_s"][label] = wall
        if failure:
            result["failures"].append(f"{label}: {failure}")
    if result["failures"]:
        result["ok"] = False
        return result
    diff = compare(root / name / "cpu", root / name / "cuda")
    structure = STRUCTURE.get(name)
    followed = structure is not None and any(line.startswith(f"{structure}:") for line in diff["values"])
    result.update(diff, structure_followed_values=followed)
    if rerun:
        again = compare(root / name / "cuda", root / name / "cuda_again")
        result["rerun_differs"] = again["missing"] + again["simulated"] + again["values"]
    result["ok"] = not diff["missing"] and (followed or not diff["simulated"]) and not result.get("rerun_differs")
    return result


def report(name: str, r: dict) -> None:
    walls = ", ".join(f"{k} {v:.1f} s" for k, v in r["wall_s"].items())
    print(f"\n== {name}: {'ok' if r['ok'] else 'FAILED'} ({walls})", flush=True)
    for line in r["failures"]:
        print(f"  run failed: {line}")
    for line in r.get("missing", []):
        print(f"  written by one run only: {line}")
    if r.get("structure_followed_values"):
        print(
            f"  {STRUCTURE[name]} differs: the GPU's trained model partitioned differently; what follows it is not held"
        )
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
    args = p.parse_args(argv)
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
    results = {}
    for name in args.only or list(RUNS):
        results[name] = check(name, root, not args.no_rerun)
        report(name, results[name])
    ok = all(r["ok"] for r in results.values())
    finish({"cuda": True, "device": torch.cuda.get_device_name(), "ok": ok, "workloads": results}, args.json)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

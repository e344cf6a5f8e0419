"""Run every benchmark of this folder and write their results to one JSON file.

    python benchmarks/run_all.py [--out benchmarks/results.json] [--quick]

In order: `vs_flower.py` (edgesim against Flower's own simulation, end to end, every path side
by side; 10, 100 and 1,000 nodes, and a sweep of 4 runs), `overhead.py`
(the simulator against a plain PyTorch loop on the default experiment's workload), `scale.py`
(memory and simulator time per round at 1,000 / 10,000 / 100,000 devices), `vmap.py` (where a
round's client time goes, and training the clients together with torch.func.vmap against the
per-client loop: equality and speed-up at 10 / 100 / 1,000 clients per round), `gpu.py` (every
workload on `torch_device=cpu` and `cuda`: the simulated columns compared, wall times; where
CUDA is available). Each runs as its
own process; its `RESULT {json}` line goes into the output file under its name, with the
command, its wall time, and the load average before and after (timings on a busy machine are
inflated: compare ratios, and rerun when the load average exceeds the cores). `--quick` runs
every benchmark small, to check that they work; `--only a,b` reruns some and keeps the other
entries of an existing output file. Load averages are 1, 5 and 15 minutes.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

BENCHMARKS = {
    "vs_flower": (
        [
            "vs_flower.py",
            "--nodes",
            "10,100,1000",
            "--sweep",
            "1,4",
            "--rounds",
            "10",
            "--repeats",
            "2",
            "--repeats-large",
            "2",
        ],
        ["vs_flower.py", "--nodes", "10", "--sweep", "1,2", "--rounds", "2", "--paths", "edgesim-local,floor"],
    ),
    "overhead": (
        ["overhead.py", "--repeats", "5", "--alternating", "2", "--threads", "1"],
        ["overhead.py", "--rounds", "3", "--repeats", "1", "--alternating", "1", "--threads", "1"],
    ),
    "scale": (
        ["scale.py", "--devices", "1000,10000,100000", "--sampled", "100", "--rounds", "5"],
        ["scale.py", "--devices", "1000,100000", "--sampled", "10", "--rounds", "2"],
    ),
    "vmap": (["vmap.py", "--repeats", "3", "--clients", "10,100,1000,unequal"], ["vmap.py", "--quick"]),
    # torch_device=cuda against cpu (a machine without CUDA records {"cuda": false})
    "gpu": (["gpu.py"], ["gpu.py", "--only", "offload", "--no-rerun"]),
}


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--out", default=str(HERE / "results.json"), help="where to write the results (default: %(default)s)"
    )
    ap.add_argument("--quick", action="store_true", help="small versions, to check that every benchmark runs")
    ap.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated subset of: " + ", ".join(BENCHMARKS))
    args = ap.parse_args(argv)
    results: dict = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "quick": args.quick,
        "benchmarks": {},
    }
    out = Path(args.out)
    if args.only != ",".join(BENCHMARKS) and out.exists():  # a subset: update those entries, keep the others
        previous = json.loads(out.read_text())
        if previous.get("quick") == args.quick:
            results["benchmarks"] = previous.get("benchmarks", {})
    failed = []
    for name in args.only.split(","):
        full, quick = BENCHMARKS[name]
        cmd = [sys.executable, str(HERE / (quick if args.quick else full)[0]), *(quick if args.quick else full)[1:]]
        shown = "python benchmarks/" + " ".join(quick if args.quick else full)
        print(f"== {name}: {shown}   (load average {load()})", flush=True)
        started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        before, t0 = load(), time.perf_counter()
        proc = subprocess.run(
            cmd,
            cwd=ROOT,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, FLWR_TELEMETRY_ENABLED="0"),
        )
        wall = time.perf_counter() - t0
        print(proc.stdout, flush=True)
        result = next(
            (
                json.loads(line[len("RESULT ") :])
                for line in reversed(proc.stdout.splitlines())
                if line.startswith("RESULT ")
            ),
            None,
        )
        if proc.returncode != 0 or result is None:
            failed.append(name)
        results["benchmarks"][name] = {
            "command": shown,
            "started_utc": started,
            "exit_code": proc.returncode,
            "wall_s": round(wall, 1),
            "load_before": before,
            "load_after": load(),
            "result": result,
        }
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results written to {args.out}" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

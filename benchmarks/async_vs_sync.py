"""What asynchrony buys: FedAvg against FedBuff and FedAsync on the same fleet, channel and
non-IID data, over several seeds, on the default fleet and on a homogeneous control.

    python benchmarks/async_vs_sync.py [--seeds 0,1,2,3,4] [--budget 300] [--jobs 2] [--out DIR]

Each job is `python -m sim +experiment=async_noniid` (fedmax_noniid's fleet, channel and data;
FedAvg, FedBuff and FedAsync each run to the same simulated time, `workload.time_budget_s`,
rounds uncapped), as a user would run it:

- `default`: the experiment's fleet (Raspberry Pis, Odroids and microcontrollers, each device's
  speed and power spread by 10%, online 95% of the time in on/off periods, so a device sampled
  for a round can go offline and keep the round waiting for its 60 s deadline);
- `homogeneous`: the control, one device kind, no spread, always online.

Prints, per fleet and strategy, the mean over seeds (and the seeds that reached the target) of
the simulated time, device energy and bytes to the target accuracy (80%), the accuracy at equal
simulated time (the budget), the server versions (rounds) made, and the mean staleness of the
updates applied. Writes every job's comparison rows to async_vs_sync.csv in --out.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
FLEETS = {
    "default": [],
    "homogeneous": ["fleet.mix={rpi3_400mhz: 1.0}", "fleet.spread=0.0", "fleet.availability=1.0"],
}


def job(out: Path, fleet: str, seed: int, budget: float) -> pd.DataFrame:
    folder = out / fleet / f"seed{seed}"
    args = [
        "+experiment=async_noniid",
        f"workload.time_budget_s={budget}",
        f"seed={seed}",
        *FLEETS[fleet],
        "progress=false",
        "plots=false",
        f"hydra.run.dir={folder}",
    ]
    env = {**os.environ, "PYTHONHASHSEED": "0", "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "sim", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{fleet} seed {seed} failed:\n{proc.stderr[-2000:]}")
    df = pd.read_csv(folder / "comparison.csv")
    df.insert(0, "fleet", fleet)
    return df


def table(df: pd.DataFrame) -> str:
    lines = [
        "| fleet | strategy | reached 80% | time to 80% (s) | energy to 80% (J) | MB to 80% "
        "| accuracy at budget | versions | mean staleness |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (fleet, strategy), g in df.groupby(["fleet", "strategy"], sort=False):
        reached = g.time_to_target_s.notna()

        def mean_sd(col: str, scale: float = 1.0, rows=g[reached]) -> str:
            v = rows[col] * scale
            return f"{v.mean():.0f} ± {v.std():.0f}" if len(v) > 1 else (f"{v.mean():.0f}" if len(v) else "-")

        lines.append(
            f"| {fleet} | {strategy} | {reached.sum()}/{len(g)} | {mean_sd('time_to_target_s')} "
            f"| {mean_sd('energy_to_target_j')} | {mean_sd('bytes_to_target', 1e-6)} "
            f"| {g.accuracy_at_equal_time.mean():.3f} ± {g.accuracy_at_equal_time.std():.3f} "
            f"| {g.rounds_run.mean():.0f} | {g.mean_staleness.mean():.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--budget", type=float, default=300.0, help="simulated seconds every strategy runs for")
    ap.add_argument("--jobs", type=int, default=2, help="jobs run at once (each uses one core)")
    ap.add_argument("--fleets", default=",".join(FLEETS))
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "async_vs_sync")
    a = ap.parse_args()
    seeds = [int(s) for s in a.seeds.split(",")]
    tasks = [(fleet, seed) for fleet in a.fleets.split(",") for seed in seeds]
    with ThreadPoolExecutor(a.jobs) as pool:
        frames = list(pool.map(lambda t: job(a.out, t[0], t[1], a.budget), tasks))
    df = pd.concat(frames, ignore_index=True)
    a.out.mkdir(parents=True, exist_ok=True)
    df.to_csv(a.out / "async_vs_sync.csv", index=False)
    print(f"budget {a.budget:g} simulated s, seeds {a.seeds}, target accuracy 0.8\n")
    print(table(df))


if __name__ == "__main__":
    main()

"""How the simulator grows with the fleet: resident memory and the simulator's own time per
round at 1,000, 10,000, 100,000 and 1,000,000 registered devices, 100 of them sampled per round.

    python benchmarks/scale.py [--devices 1000,10000,100000,1000000] [--sampled 100] [--rounds 5]
                               [--plain] [--json PATH]

Each fleet size runs in a fresh process (so resident memory is its own): the federated
workload with FedAvg (`fraction_train = sampled / devices`), the mixed fleet, the radio
channel, the MLP on digits with `dataset.partition=sampled` (each device holds 16 samples,
drawn only when it is sampled), one local epoch, and the whole simulated network switched on:
each device online 90% of the time by its own renewal process (mean online period 600 s), a
shared medium (one cell), per-device links (`channel.links=spread`), the server computing on
its profile (`--plain`: every device always online, dedicated identical links). Reported per size:

* resident memory (VmRSS) after the imports, after building the job (fleet, partitions,
  model), and the peak over the run (ru_maxrss), in MiB;
* wall time per round, split into the sampled clients' training (the back end's `execute`:
  the real ClientApp computations), the server's evaluation of the global model (workload
  work), and the rest: the simulator's own time (Flower's strategy and messages, links,
  SimPy round, energy ledger, reports).

The last line is `RESULT {json}`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import finish, load_note


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(devices: int, sampled: int, rounds: int, seed: int, plain: bool = False) -> dict:
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    warnings.filterwarnings("ignore", category=FutureWarning, module="pyarrow.*")
    sys.path.insert(0, str(ROOT))
    from dataclasses import replace

    import torch

    import sim.federated.job as runner
    from sim.backends import LocalBackend
    from sim.federated.build import prepare
    from sim.jobs import default_config

    rss_imports = rss_mib()
    cfg = default_config()
    cfg.seed, cfg.progress = seed, False
    cfg.fleet.num_devices = devices
    cfg.fleet.availability = 1.0 if plain else 0.9
    if not plain:
        cfg.channel.medium, cfg.channel.links = "shared", "spread"
    cfg.strategy.fraction_train = sampled / devices
    cfg.workload.model, cfg.workload.rounds, cfg.workload.local_epochs = "mlp", rounds, 1
    cfg.dataset.partition, cfg.dataset.samples_per_device = "sampled", 16

    t = time.perf_counter()
    variants, fleet, _link, task = prepare(cfg)
    build_s = time.perf_counter() - t
    rss_built = rss_mib()

    spent = {"clients": 0.0, "evaluation": 0.0, "clients_run": 0}

    class TimedBackend(LocalBackend):
        def execute(self, app, jobs, done=None):
            t0 = time.perf_counter()
            try:
                return super().execute(app, jobs, done)
            finally:
                spent["clients"] += time.perf_counter() - t0
                spent["clients_run"] += len(jobs)

    evaluate = runner.evaluate_model

    def timed_evaluate(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return evaluate(*args, **kwargs)
        finally:
            spent["evaluation"] += time.perf_counter() - t0

    runner.evaluate_model = timed_evaluate
    backend = TimedBackend(cfg.workload.optimizer_copies, cfg.torch_threads)
    # warm-up (first-use costs of torch's optimiser, Flower, SimPy): one round, untimed
    runner.simulate(
        replace(cfg, workload=replace(cfg.workload, rounds=1)),
        variants[0],
        fleet,
        task,
        progress=False,
        backend=backend,
    )
    spent.update(clients=0.0, evaluation=0.0, clients_run=0)
    t = time.perf_counter()
    res = runner.simulate(cfg, variants[0], fleet, task, progress=False, backend=backend)
    total = time.perf_counter() - t
    own = total - spent["clients"] - spent["evaluation"]
    return {
        "devices": devices,
        "sampled_per_round": sampled,
        "rounds": rounds,
        "clients_trained": spent["clients_run"],
        "clients_received": sum(r.clients_received for r in res.rounds),
        "rss_after_imports_mib": round(rss_imports, 1),
        "rss_after_build_mib": round(rss_built, 1),
        "rss_peak_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "build_s": round(build_s, 3),
        "round_s": round(total / rounds, 4),
        "client_training_s_per_round": round(spent["clients"] / rounds, 4),
        "evaluation_s_per_round": round(spent["evaluation"] / rounds, 4),
        "simulator_own_s_per_round": round(own / rounds, 4),
        "simulator_own_ms_per_client": round(1000 * own / max(spent["clients_run"], 1), 3),
        "network": "plain" if plain else "availability 0.9, shared medium, spread links, server compute",
        "sim_time_s": float(res.summary["sim_time_s"]),
        "final_accuracy": float(res.rounds[-1].accuracy),
        "torch_threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", default="1000,10000,100000,1000000", help="comma-separated fleet sizes")
    ap.add_argument("--plain", action="store_true", help="devices always online on dedicated identical links")
    ap.add_argument("--sampled", type=int, default=100, help="devices sampled per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="also write the result here")
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child is not None:
        print("CHILD " + json.dumps(child(args.child, args.sampled, args.rounds, args.seed, args.plain)), flush=True)
        return 0
    print(f"load average before: {load_note()}", flush=True)
    rows = []
    env = dict(os.environ, FLWR_TELEMETRY_ENABLED="0", PYTHONHASHSEED="0")
    for n in (int(x) for x in args.devices.split(",")):
        proc = subprocess.run(
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "--child",
                str(n),
                "--sampled",
                str(args.sampled),
                "--rounds",
                str(args.rounds),
                "--seed",
                str(args.seed),
                *(["--plain"] if args.plain else []),
            ],
            cwd=ROOT,
            env=env,
            text=True,
            capture_output=True,
        )
        if proc.returncode != 0:
            raise SystemExit(f"{n} devices failed:\n{proc.stderr[-3000:]}")
        row = next(json.loads(line[6:]) for line in proc.stdout.splitlines() if line.startswith("CHILD "))
        rows.append(row)
        print(
            f"  {n:>7} devices: RSS {row['rss_after_imports_mib']:.0f} -> {row['rss_after_build_mib']:.0f} MiB "
            f"(peak {row['rss_peak_mib']:.0f}), per round {1000 * row['round_s']:.1f} ms = clients "
            f"{1000 * row['client_training_s_per_round']:.1f} + evaluation {1000 * row['evaluation_s_per_round']:.1f} "
            f"+ simulator {1000 * row['simulator_own_s_per_round']:.1f} ms",
            flush=True,
        )
    print(
        f"\n{'devices':>8} {'RSS build MiB':>14} {'RSS peak MiB':>13} {'sim ms/round':>13} {'sim ms/client':>14} "
        f"{'clients ms/round':>17}"
    )
    for r in rows:
        print(
            f"{r['devices']:>8} {r['rss_after_build_mib']:14.1f} {r['rss_peak_mib']:13.1f} "
            f"{1000 * r['simulator_own_s_per_round']:13.1f} {r['simulator_own_ms_per_client']:14.2f} "
            f"{1000 * r['client_training_s_per_round']:17.1f}"
        )
    if len(rows) > 1:
        a, b = rows[0], rows[-1]
        print(
            f"from {a['devices']} to {b['devices']} devices ({b['devices'] / a['devices']:.0f}x): peak memory "
            f"+{b['rss_peak_mib'] - a['rss_peak_mib']:.1f} MiB, simulator time per round x"
            f"{b['simulator_own_s_per_round'] / a['simulator_own_s_per_round']:.2f}"
        )
    result = {"rows": rows, "load_after": load_note()}
    print(f"load average after: {result['load_after']}")
    finish(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())

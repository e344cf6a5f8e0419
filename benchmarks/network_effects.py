"""The simulated network's effects, one at a time, on the default experiment (fedmax_noniid:
FedAvg, FedProx and FedMAX on non-IID digits over the mixed fleet), and the shared medium's
round time against the number of clients per round.

    python benchmarks/network_effects.py effects [--rounds 40] [--out DIR]
    python benchmarks/network_effects.py medium [--clients 1,2,4,8,16,30] [--out DIR]

`effects`: a baseline with every effect off (dedicated links, every device always online, a
server that aggregates and evaluates in no time, identical links, and every device offered
whether busy or not), then each effect switched on alone, then all of them (the defaults).
Prints a markdown table: final accuracy per strategy, and FedMAX's simulated time, device
energy, server energy, and client statuses over the run.

`medium`: FedAvg over a shared medium (one cell of 1 Mbit/s, identical devices, no errors),
`k` clients a round for each k: the simulated download time of a round against k times the
single-transfer airtime that processor sharing predicts (equal transfers started together end
together after k airtimes). Prints a table and writes medium.png.

Every figure comes from the runs' CSVs (`python -m sim`, as a user would run it).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import finish, load_note

OFF = [
    "channel.medium=dedicated",
    "fleet.availability=1.0",
    "fleet.server=null",
    "channel.links=same",
    "fleet.offer=all",
]
EFFECTS = {
    "all off": [],
    "shared medium": ["channel.medium=shared"],
    "busy devices not offered (offer=idle)": ["fleet.offer=idle"],
    "availability process (0.95, mean online 600 s)": ["fleet.availability=0.95"],
    "server computes (edge_server)": ["fleet.server=edge_server"],
    "per-device links (spread 0.5)": ["channel.links=spread"],
    "all on (defaults + shared medium + spread links)": [
        "channel.medium=shared",
        "fleet.offer=idle",
        "fleet.availability=0.95",
        "fleet.server=edge_server",
        "channel.links=spread",
    ],
}
STATUSES = ["received", "straggler", "busy", "offline", "battery_depleted", "lost_down", "lost_up", "out_of_memory"]


def sim(out: Path, args: list[str]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "sim", *args, "progress=false", "plots=false", f"hydra.run.dir={out}"]
    env = {**os.environ, "PYTHONHASHSEED": "0", "MPLBACKEND": "Agg"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    return out


def effects(out: Path, rounds: int, deadline: float | None) -> list[dict]:
    rows = []
    for name, on in EFFECTS.items():
        extra = [f"workload.rounds={rounds}"] + ([f"strategy.timeout_s={deadline}"] if deadline else [])
        folder = sim(out / name.split(" (")[0].replace(" ", "_"), ["+experiment=fedmax_noniid", *OFF, *on, *extra])
        comp = pd.read_csv(folder / "comparison.csv").set_index("strategy")
        clients = pd.read_csv(folder / "fedmax" / "clients.csv")
        counts = clients[clients.phase == "train"].status.value_counts()
        fm = comp.loc["fedmax"]
        row = {"effect": name, **{f"{s}_accuracy": float(comp.loc[s, "final_accuracy"]) for s in comp.index}}
        row.update(
            sim_time_s=float(fm.sim_time_s),
            device_energy_j=float(fm.active_energy_j + fm.idle_energy_j),
            server_energy_j=float(fm.server_energy_j),
            mean_upload_s=float(clients.upload_s[clients.upload_s > 0].mean()),
            **{s: int(counts.get(s, 0)) for s in STATUSES},
        )
        rows.append(row)
        print(row, flush=True)
    return rows


def table(rows: list[dict]) -> str:
    head = "| effect | FedAvg | FedProx | FedMAX | sim time (s) | device energy (kJ) | server (J) | mean upload (s) | "
    head += " | ".join(STATUSES) + " |"
    lines = [head, "|" + "---|" * (8 + len(STATUSES))]
    for r in rows:
        cells = [
            r["effect"],
            f"{r['fedavg_accuracy']:.3f}",
            f"{r['fedprox_accuracy']:.3f}",
            f"{r['fedmax_accuracy']:.3f}",
            f"{r['sim_time_s']:.1f}",
            f"{r['device_energy_j'] / 1000:.1f}",
            f"{r['server_energy_j']:.1f}",
            f"{r['mean_upload_s']:.2f}",
            *(str(r[s]) for s in STATUSES),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def medium(out: Path, clients: list[int]) -> list[dict]:
    rows = []
    for k in clients:
        folder = sim(
            out / f"k{k}",
            [
                "+experiment=fedmax_noniid",
                "compare=[fedavg]",
                "workload.rounds=3",
                "workload.model=mlp",
                "fleet=rpi",
                "fleet.num_devices=30",
                f"strategy.fraction_train={k / 30}",
                f"strategy.min_train_nodes={min(k, 2)}",
                "strategy.timeout_s=null",
                "channel.medium=shared",
                "fleet.server=null",
            ],
        )
        c = pd.read_csv(folder / "clients.csv")
        c = c[c.phase == "train"]
        single = float(c.bytes_down.iloc[0]) * 8 / 1e6  # one download's airtime alone at 1 Mbit/s
        rows.append(
            {
                "clients": k,
                "download_s": float(c.download_s.mean()),
                "processor_sharing_s": k * single + 0.01,
                "round_s": float(pd.read_csv(folder / "rounds.csv").sim_time_s.diff().fillna(0).iloc[1:].mean()),
            }
        )
        print(rows[-1], flush=True)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sim.report import legend_below, save_figure

    fig, ax = plt.subplots(figsize=(6, 4))
    df = pd.DataFrame(rows)
    ax.plot(df.clients, df.round_s, marker="o", label="simulated round time")
    ax.plot(df.clients, df.download_s, marker="s", label="simulated download time")
    ax.plot(df.clients, df.processor_sharing_s, "k--", label="k x airtime + latency (processor sharing)")
    ax.set_xlabel("clients per round (one shared 1 Mbit/s cell)")
    ax.set_ylabel("simulated seconds")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    legend_below(fig)
    save_figure(fig, out / "medium.png")
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["effects", "medium"])
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--deadline", type=float, default=None, help="strategy.timeout_s for every run")
    ap.add_argument("--clients", default="1,2,4,8,16,30")
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "network_effects")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    print(f"load average before: {load_note()}", flush=True)
    if args.what == "effects":
        rows = effects(args.out, args.rounds, args.deadline)
        print(table(rows))
    else:
        rows = medium(args.out, [int(k) for k in args.clients.split(",")])
        print("| clients | download (s) | k x airtime + latency (s) | round (s) |\n|---|---|---|---|")
        for r in rows:
            print(f"| {r['clients']} | {r['download_s']:.2f} | {r['processor_sharing_s']:.2f} | {r['round_s']:.2f} |")
    finish({"rows": rows}, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())

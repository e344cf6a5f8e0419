"""The federated job's tables: a row per round (rounds.csv), per client (clients.csv, the grid's
`ClientRow`) and the run's summary (summary.csv), from what the grid recorded."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from sim.config import Config, StrategyConfig
from sim.federated.grid import ClientRow, PhaseStats, SimGrid
from sim.report import channel_columns
from strategies import activation_divergence

__all__ = ["CLIENT_COLUMNS", "ROUND_COLUMNS", "RoundRow", "VariantResult", "round_rows", "summary"]


@dataclass
class RoundRow:
    """One round of one run: the row of rounds.csv."""

    round: int
    sim_time_s: float
    accuracy: float
    loss: float
    clients_sampled: int
    clients_received: int
    clients_straggled: int
    clients_busy: int  # sampled while still working on an earlier round
    clients_offline: int  # offline when the message came, or went offline before replying
    clients_battery_depleted: int
    clients_lost: int
    clients_out_of_memory: int
    bytes_down: int
    bytes_up: int
    retransmissions: int
    bits_flipped: int
    energy_j: float
    activation_divergence: float


ROUND_COLUMNS = [f.name for f in fields(RoundRow)]  # the headers of an empty table
CLIENT_COLUMNS = [f.name for f in fields(ClientRow)]


@dataclass
class VariantResult:
    strategy: str
    rounds: list[RoundRow]
    clients: list[ClientRow]
    summary: dict
    timeline: list[dict]


def _weighted_mean(metrics: list[dict], key: str) -> float:
    weights = [float(m.get("num-examples", 1)) for m in metrics]
    if not metrics or sum(weights) <= 0:
        return math.nan
    return sum(float(m.get(key, math.nan)) * w for m, w in zip(metrics, weights)) / sum(weights)


def round_rows(phases: list[PhaseStats], evals: dict[int, tuple[float, float]], app_cfg) -> list[RoundRow]:
    rows = []
    for rnd in sorted({p.round for p in phases}):
        ps = [p for p in phases if p.round == rnd]
        clients = [c for p in ps for c in p.clients]
        train = [c for p in ps if p.phase == "train" for c in p.clients]
        status = [c.status for c in train]
        acts = [a for p in ps for a in p.mean_activations]
        acc, loss = evals.get(rnd, (math.nan, math.nan))
        if rnd not in evals:  # a user's app: the clients' evaluate metrics, weighted by examples
            ev = [m for p in ps for _, m in p.eval_metrics]
            acc, loss = _weighted_mean(ev, app_cfg.accuracy_metric), _weighted_mean(ev, app_cfg.loss_metric)
        rows.append(
            RoundRow(
                round=rnd,
                sim_time_s=max(p.end_s for p in ps),
                accuracy=acc,
                loss=loss,
                clients_sampled=len(train),
                clients_received=status.count("received"),
                clients_straggled=status.count("straggler"),
                clients_busy=status.count("busy"),
                clients_offline=status.count("offline"),
                clients_battery_depleted=status.count("battery_depleted"),
                clients_lost=status.count("lost_down") + status.count("lost_up") + status.count("error"),
                clients_out_of_memory=status.count("out_of_memory"),
                bytes_down=sum(c.bytes_down for c in clients),
                bytes_up=sum(c.bytes_up for c in clients),
                retransmissions=sum(c.retransmissions for c in clients),
                bits_flipped=sum(c.bits_flipped for c in clients),
                energy_j=sum(c.energy_j for c in clients),
                activation_divergence=activation_divergence(np.stack(acts)) if len(acts) > 1 else math.nan,
            )
        )
    return rows


def summary(
    cfg: Config, scfg: StrategyConfig, rounds: list[RoundRow], grid: SimGrid, end_s: float, stopped: str = ""
) -> dict:
    c = cfg.channel
    reached = [r for r in rounds if r.accuracy >= cfg.workload.target_accuracy]
    accuracies = [r.accuracy for r in rounds if not math.isnan(r.accuracy)]
    divergences = [r.activation_divergence for r in rounds if not math.isnan(r.activation_divergence)]
    energy = grid.ledger.energy_j
    user_app = cfg.workload.app.server is not None  # its own ServerApp picks strategy and deadline

    def total(name: str) -> int:
        return int(sum(getattr(r, name) for r in rounds))

    return {
        # the settings
        "strategy": f"app:{cfg.workload.app.server}" if user_app else scfg.name,
        "seed": cfg.seed,
        "dataset": cfg.dataset.name,
        "partition": cfg.dataset.partition,
        "model": "app" if user_app else cfg.workload.model,
        "num_devices": len(grid.fleet),
        "fraction_train": math.nan if user_app else scfg.fraction_train,
        "deadline_s": math.nan if user_app else scfg.timeout_s,
        **channel_columns(c),
        "rounds": cfg.workload.rounds,
        # the outcomes (NaN accuracies, e.g. of an app that reports none, are skipped as pandas would)
        "rounds_run": len(rounds),
        "ended": stopped or "completed",  # or why the run stopped before its rounds
        "final_accuracy": rounds[-1].accuracy if rounds else math.nan,
        "best_accuracy": max(accuracies, default=math.nan),
        "final_loss": rounds[-1].loss if rounds else math.nan,
        "target_accuracy": cfg.workload.target_accuracy,
        "rounds_to_target": reached[0].round if reached else math.nan,
        "time_to_target_s": float(reached[0].sim_time_s) if reached else math.nan,
        "sim_time_s": end_s,
        "active_energy_j": float(energy[:, :3].sum()),
        "idle_energy_j": float(energy[:, 3].sum()),
        "server_compute_s": grid.server.busy_s,
        "server_energy_j": grid.server.energy_j,
        "devices_alive": grid.ledger.devices_alive(end_s),
        "bytes_down": total("bytes_down"),
        "bytes_up": total("bytes_up"),
        "retransmissions": total("retransmissions"),
        "bits_flipped": total("bits_flipped"),
        "clients_straggled": total("clients_straggled"),
        "clients_busy": total("clients_busy"),
        "clients_offline": total("clients_offline"),
        "clients_battery_depleted": total("clients_battery_depleted"),
        "clients_lost": total("clients_lost"),
        "clients_out_of_memory": total("clients_out_of_memory"),
        "mean_activation_divergence": float(np.mean(divergences)) if divergences else math.nan,
    }

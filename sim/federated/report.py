"""The federated job's tables: a row per round (rounds.csv), per client (clients.csv, the grid's
`ClientRow`) and the run's summary (summary.csv), from what the grid recorded."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from sim.config import Config, StrategyConfig
from sim.federated.grid import SimGrid
from sim.federated.rows import ClientRow, PhaseStats, VersionStats
from sim.report import channel_columns
from strategies import activation_divergence

__all__ = [
    "CLIENT_COLUMNS",
    "ROUND_COLUMNS",
    "RoundRow",
    "VariantResult",
    "equal_time_accuracy",
    "round_rows",
    "summary",
    "version_rows",
]


@dataclass
class RoundRow:
    """One round of one run: the row of rounds.csv."""

    round: int
    sim_time_s: float
    accuracy: float
    loss: float
    model_finite: bool | None  # every value of the round's model finite (None: the grid never saw it)
    clients_sampled: int
    clients_received: int
    clients_straggled: int
    clients_busy: int  # sampled while still working on an earlier round
    clients_offline: int  # offline when the message came, or went offline before replying
    clients_battery_depleted: int
    clients_lost: int
    clients_out_of_memory: int
    clients_non_finite: int  # replies with NaN or inf in their arrays, kept out of aggregation
    bytes_down: int
    bytes_up: int
    retransmissions: int
    bits_flipped: int
    energy_j: float
    activation_divergence: float
    updates_applied: int  # replies aggregated into this round's model (or server version)
    mean_staleness: float  # of those, in server versions (0 in synchronous rounds)
    max_staleness: float


ROUND_COLUMNS = [f.name for f in fields(RoundRow)]  # the headers of an empty table
CLIENT_COLUMNS = [f.name for f in fields(ClientRow)]


@dataclass
class VariantResult:
    """One strategy's run: its round and client rows, summary and timeline."""

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


def _statuses(rows: list[ClientRow]) -> dict:
    status = [c.status for c in rows]
    return {
        "clients_received": status.count("received"),
        "clients_straggled": status.count("straggler"),
        "clients_busy": status.count("busy"),
        "clients_offline": status.count("offline"),
        "clients_battery_depleted": status.count("battery_depleted"),
        "clients_lost": status.count("lost_down") + status.count("lost_up") + status.count("error"),
        "clients_out_of_memory": status.count("out_of_memory"),
        "clients_non_finite": status.count("non_finite"),
    }


def _costs(rows: list[ClientRow], acts: list[np.ndarray]) -> dict:
    return {
        "bytes_down": sum(c.bytes_down for c in rows),
        "bytes_up": sum(c.bytes_up for c in rows),
        "retransmissions": sum(c.retransmissions for c in rows),
        "bits_flipped": sum(c.bits_flipped for c in rows),
        "energy_j": sum(c.energy_j for c in rows),
        "activation_divergence": activation_divergence(np.stack(acts)) if len(acts) > 1 else math.nan,
    }


def _staleness(applied: list[ClientRow]) -> dict:
    stale = [c.staleness for c in applied]
    return {
        "updates_applied": len(applied),
        "mean_staleness": float(np.mean(stale)) if stale else math.nan,
        "max_staleness": float(max(stale)) if stale else math.nan,
    }


def _accuracy(rnd: int, evals: dict, eval_metrics: list[tuple[int, dict]], app_cfg) -> tuple[float, float]:
    if rnd in evals:
        return evals[rnd]
    ev = [m for _, m in eval_metrics]  # a user's app: the clients' evaluate metrics, weighted by examples
    return _weighted_mean(ev, app_cfg.accuracy_metric), _weighted_mean(ev, app_cfg.loss_metric)


def round_rows(
    phases: list[PhaseStats], evals: dict[int, tuple[float, float]], app_cfg, finite: dict[int, bool]
) -> list[RoundRow]:
    """A row per synchronous round: its phases' clients (`finite`: whether model r was, by version)."""
    rows = []
    for rnd in sorted({p.round for p in phases}):
        ps = [p for p in phases if p.round == rnd]
        clients = [c for p in ps for c in p.clients]
        train = [c for p in ps if p.phase == "train" for c in p.clients]
        acc, loss = _accuracy(rnd, evals, [m for p in ps for m in p.eval_metrics], app_cfg)
        rows.append(
            RoundRow(
                round=rnd,
                sim_time_s=max(p.end_s for p in ps),
                accuracy=acc,
                loss=loss,
                model_finite=finite.get(rnd),
                clients_sampled=len(train),
                **_statuses(train),
                **_costs(clients, [a for p in ps for a in p.activations]),
                **_staleness([c for c in train if c.status == "received"]),
            )
        )
    return rows


def version_rows(
    versions: list[VersionStats], evals: dict[int, tuple[float, float]], app_cfg, finite: dict[int, bool]
) -> list[RoundRow]:
    """A row per server version of an asynchronous run: the messages sent while the server held
    the version before, the outcomes it pulled, the updates it applied (with their staleness);
    bytes and energy are those of the messages whose outcome it learnt."""
    rows = []
    for v in versions:
        if not (v.sent or v.returned):
            continue
        acc, loss = _accuracy(v.version, evals, v.eval_metrics, app_cfg)
        returned = [c for c in v.returned if c.phase == "train"]
        rows.append(
            RoundRow(
                round=v.version,
                sim_time_s=v.time_s,
                accuracy=acc,
                loss=loss,
                model_finite=finite.get(v.version),
                clients_sampled=sum(c.phase == "train" for c in v.sent),
                **_statuses(returned),
                **_costs(v.returned, [a for a in v.activations if a is not None]),
                **_staleness(v.applied),
            )
        )
    return rows


def summary(
    cfg: Config,
    scfg: StrategyConfig,
    rounds: list[RoundRow],
    clients: list[ClientRow],
    grid: SimGrid,
    end_s: float,
    stopped: str = "",
) -> dict:
    reached = [r for r in rounds if r.accuracy >= cfg.workload.target_accuracy]
    accuracies = [r.accuracy for r in rounds if not math.isnan(r.accuracy)]
    divergences = [r.activation_divergence for r in rounds if not math.isnan(r.activation_divergence)]
    energy = grid.ledger.energy_j
    user_app = cfg.workload.app.server is not None  # its own ServerApp picks strategy and deadline

    def total(name: str) -> int:
        return int(sum(getattr(r, name) for r in rounds))

    upto = rounds[: rounds.index(reached[0]) + 1] if reached else []
    applied = [c.staleness for c in clients if c.status == "received" and c.phase == "train" and c.staleness >= 0]

    return {
        # the settings
        "strategy": f"app:{cfg.workload.app.server}" if user_app else scfg.name,
        "seed": cfg.seed,
        "dataset": "app" if user_app else cfg.dataset.name,  # the app loads its own data
        "partition": "app" if user_app else cfg.dataset.partition,
        "model": "app" if user_app else cfg.workload.model,
        "num_devices": len(grid.fleet),
        "fraction_train": math.nan if user_app else scfg.fraction_train,
        "deadline_s": math.nan if user_app else scfg.timeout_s,
        **channel_columns(cfg.channel),
        "rounds": cfg.workload.rounds,
        # what else decides the result: the strategy's own parameters, the clients' training, the fleet
        "strategy_params": "app"
        if user_app
        else " ".join(f"{k}={v}" for k, v in sorted(scfg.params.items())) or "none",
        "lr": math.nan if user_app else cfg.workload.lr,
        "local_epochs": math.nan if user_app else cfg.workload.local_epochs,
        "batch_size": math.nan if user_app else cfg.workload.batch_size,
        "fleet_mix": " ".join(f"{k}={v:g}" for k, v in cfg.fleet.mix.items()),
        # the outcomes (NaN accuracies, e.g. of an app that reports none, are skipped as pandas would)
        "rounds_run": len(rounds),
        "ended": stopped or "completed",  # or why the run stopped before its rounds
        "final_accuracy": rounds[-1].accuracy if rounds else math.nan,
        "best_accuracy": max(accuracies, default=math.nan),
        "final_loss": rounds[-1].loss if rounds else math.nan,
        # the first round whose model held a NaN or inf (a raw channel's flips let through, a diverging lr)
        "collapsed_round": next((r.round for r in rounds if r.model_finite is False), math.nan),
        "target_accuracy": cfg.workload.target_accuracy,
        "rounds_to_target": reached[0].round if reached else math.nan,
        "time_to_target_s": float(reached[0].sim_time_s) if reached else math.nan,
        # what the devices spent (active energy, bytes both ways) until the round that reached it
        "energy_to_target_j": sum(r.energy_j for r in upto) if reached else math.nan,
        "bytes_to_target": sum(r.bytes_down + r.bytes_up for r in upto) if reached else math.nan,
        # every compared strategy's accuracy at the same simulated time: the earliest end among them
        "equal_time_s": end_s,
        "accuracy_at_equal_time": rounds[-1].accuracy if rounds else math.nan,
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
        "clients_non_finite": total("clients_non_finite"),
        "updates_applied": total("updates_applied"),
        "mean_staleness": float(np.mean(applied)) if applied else math.nan,
        "max_staleness": float(max(applied)) if applied else math.nan,
        "mean_activation_divergence": float(np.mean(divergences)) if divergences else math.nan,
    }


def equal_time_accuracy(results: list[VariantResult]) -> None:
    """Compared strategies at equal simulated time: each one's accuracy at the earliest time
    any of them ended (its last evaluated round or version by then), in its summary."""
    if len(results) < 2:
        return
    horizon = min(r.summary["sim_time_s"] for r in results)
    for r in results:
        evaluated = [row for row in r.rounds if row.sim_time_s <= horizon and not math.isnan(row.accuracy)]
        r.summary["equal_time_s"] = horizon
        r.summary["accuracy_at_equal_time"] = evaluated[-1].accuracy if evaluated else math.nan

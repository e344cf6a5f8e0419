"""`run(cfg, out_dir)`: build the objects a config describes, simulate, write the reports.

Plain Python with typed dataclasses in and files out; the Hydra entry point is a thin
wrapper around it. The federated workload runs one simulation per compared strategy on the
same data partition, fleet and channel, and writes one folder per strategy plus a
comparison across them.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord, RecordDict
from tqdm import tqdm

from channels import Link
from devices import Fleet, build_fleet
from experiments.common.data import Dataset, load_dataset
from experiments.common.models import build_model
from experiments.federated.internals import set_task_identity
from experiments.federated.partition import SampledPartitions, partition_indices
from experiments.federated.records import ModelRecords
from experiments.federated.task import FederatedTask, evaluate_model, make_client_app
from sim.backends import make_backend
from sim.backends.base import Backend, torch_threads
from sim.backends.local import LocalBackend
from sim.config import Config, ConfigError, StrategyConfig
from sim.federated.grid import RUN_ID, SERVER_NODE_ID, ClientRow, PhaseStats, SimGrid
from sim.meter import WorkMeter
from sim.net import build_link
from sim.report import plot_accuracy, write_json, write_rows
from sim.seeding import stream
from strategies import STRATEGIES, activation_divergence, build_strategy

__all__ = ["RoundRow", "VariantResult", "run", "strategy_variants"]


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
    clients_dropped: int
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


# --- building --------------------------------------------------------------------------
def strategy_variants(cfg: Config) -> list[StrategyConfig]:
    """The strategies this job runs: `compare` names, or just `strategy`.

    A compared strategy takes the shared settings of `strategy` (sampling, deadline); its own
    parameters are those Hydra composed for it (`sim/conf/strategy/<name>.yaml`, with the
    `strategy.params` overrides when it is the selected strategy), in `compared`.
    """
    if not cfg.compare:
        return [cfg.strategy]
    out = []
    for name in cfg.compare:
        if name not in STRATEGIES:
            raise ConfigError(f"compare: unknown strategy {name!r}; allowed: {', '.join(sorted(STRATEGIES))}")
        params = cfg.strategy.params if name == cfg.strategy.name else cfg.compared.get(name, {})
        out.append(replace(cfg.strategy, name=name, params=dict(params)))
    return out


def _load_app(ref: str, setting: str):
    module, _, attr = ref.partition(":")
    if not module or not attr:
        raise ConfigError(f"{setting}={ref!r}: give it as 'package.module:attr'")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{setting}={ref!r}: cannot import it ({exc})") from None


def _human_bytes(n: float) -> str:
    if n < 1024:
        return f"{n:.0f} B"
    for unit in ("KiB", "MiB", "GiB"):
        n /= 1024
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}"


def _check_fits_somewhere(cfg: Config, model: torch.nn.Module, data: Dataset, fleet: Fleet) -> None:
    """Refuse a model that no device of the fleet could train (one batch, measured)."""
    x = data.x_train[: cfg.workload.batch_size]
    meter = WorkMeter(optimizer_copies=cfg.workload.optimizer_copies)
    with meter:
        model(x).sum().backward()
    model.zero_grad(set_to_none=True)
    largest = int(fleet.memory_bytes.max())
    if meter.peak_bytes > largest:
        raise ConfigError(
            f"workload.model={cfg.workload.model!r}: training it with batch_size={cfg.workload.batch_size} needs "
            f"{_human_bytes(meter.peak_bytes)}, but the largest device of fleet.mix has {_human_bytes(largest)}; "
            "allowed: a smaller model or batch, or a fleet with a larger device"
        )


@contextlib.contextmanager
def _flower_log(log_level: str) -> Iterator[None]:
    """Flower's own log at `log_level` (quiet by default), restored after."""
    flwr_log = logging.getLogger("flwr")
    old_level = flwr_log.level
    flwr_log.setLevel(log_level.upper())
    try:
        yield
    finally:
        flwr_log.setLevel(old_level)


@contextlib.contextmanager
def _flower_session(seed: int, log_level: str) -> Iterator[None]:
    """Flower's strategies sample nodes with the global `random`: seed it for the run and
    restore it after; set the task identity Flower's messages read; quiet Flower's log."""
    state = random.getstate()
    random.seed(int(stream(seed, "sampling").integers(2**63)))
    set_task_identity((RUN_ID, SERVER_NODE_ID, 1))
    try:
        # a user's ServerApp initialises its model from torch's global generator: seed it too;
        # weights a raw channel turned to inf/NaN are an outcome to report, not to warn about
        with _flower_log(log_level), torch.random.fork_rng(devices=[]), np.errstate(over="ignore", invalid="ignore"):
            torch.manual_seed(int(stream(seed, "server").integers(2**62)))
            yield
    finally:
        random.setstate(state)


def _strategy(scfg: StrategyConfig, num_devices: int):
    return build_strategy(
        scfg.name,
        scfg.params,
        fraction_train=scfg.fraction_train,
        fraction_evaluate=scfg.fraction_evaluate,
        min_train_nodes=min(scfg.min_train_nodes, num_devices),
        min_evaluate_nodes=min(scfg.min_train_nodes, num_devices),
        min_available_nodes=min(2, num_devices),
    )


# --- one simulation ----------------------------------------------------------------------
def _weighted_mean(metrics: list[dict], key: str) -> float:
    weights = [float(m.get("num-examples", 1)) for m in metrics]
    if not metrics or sum(weights) <= 0:
        return math.nan
    return sum(float(m.get(key, math.nan)) * w for m, w in zip(metrics, weights)) / sum(weights)


def _round_rows(phases: list[PhaseStats], evals: dict[int, tuple[float, float]], app_cfg) -> list[RoundRow]:
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
                clients_dropped=status.count("dropped"),
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


def _summary(cfg: Config, scfg: StrategyConfig, rounds: list[RoundRow], grid: SimGrid) -> dict:
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
        "channel_model": c.model,
        "channel_mode": c.mode,
        "channel_ber": c.ber,
        "bandwidth_bps": c.bandwidth_bps,
        "latency_s": c.latency_s,
        "rounds": cfg.workload.rounds,
        # the outcomes (NaN accuracies, e.g. of an app that reports none, are skipped as pandas would)
        "final_accuracy": rounds[-1].accuracy,
        "best_accuracy": max(accuracies, default=math.nan),
        "final_loss": rounds[-1].loss,
        "target_accuracy": cfg.workload.target_accuracy,
        "rounds_to_target": reached[0].round if reached else math.nan,
        "time_to_target_s": float(reached[0].sim_time_s) if reached else math.nan,
        "sim_time_s": grid.now_s,
        "active_energy_j": float(energy[:, :3].sum()),
        "idle_energy_j": float(energy[:, 3].sum()),
        "bytes_down": total("bytes_down"),
        "bytes_up": total("bytes_up"),
        "retransmissions": total("retransmissions"),
        "bits_flipped": total("bits_flipped"),
        "clients_straggled": total("clients_straggled"),
        "clients_dropped": total("clients_dropped"),
        "clients_lost": total("clients_lost"),
        "clients_out_of_memory": total("clients_out_of_memory"),
        "mean_activation_divergence": float(np.mean(divergences)) if divergences else math.nan,
    }


def simulate(
    cfg: Config,
    scfg: StrategyConfig,
    fleet: Fleet,
    link: Link,
    task: FederatedTask | None,
    progress: bool = True,
    backend: Backend | None = None,
) -> VariantResult:
    """One federated simulation with strategy `scfg` (built-in workload when `task` is given,
    else the user's ServerApp/ClientApp of `cfg.workload.app`)."""
    app_cfg = cfg.workload.app
    client_app = make_client_app(task) if task is not None else _load_app(app_cfg.client, "workload.app.client")
    backend = backend or LocalBackend(cfg.workload.optimizer_copies, cfg.torch_threads)
    grid = SimGrid(
        fleet=fleet,
        link=link,
        client_app=client_app,
        seed=cfg.seed,
        backend=backend,
        availability=cfg.fleet.availability,
        run_config=app_cfg.run_config,
    )
    evals: dict[int, tuple[float, float]] = {}
    bar = tqdm(total=cfg.workload.rounds, desc=scfg.name, unit="round", disable=not progress, leave=False)
    # the server's computations too (aggregation, evaluation) with a fixed thread count: a job's
    # numbers must not depend on the process it runs in (a sweep's jobs may run on Ray workers)
    with _flower_session(cfg.seed, cfg.log_level), bar, torch_threads(cfg.torch_threads):
        grid.observer = lambda stats: bar.update(1) if stats.phase == "train" else None
        if task is not None:
            strategy = _strategy(scfg, len(fleet))
            model = task.build_model()
            weights = ModelRecords(model)

            def evaluate_fn(rnd: int, arrays: ArrayRecord) -> MetricRecord:
                weights.load(arrays)
                loss, acc = evaluate_model(model, task.data.x_test, task.data.y_test)
                evals[rnd] = (acc, loss)
                return MetricRecord({"accuracy": acc, "loss": loss})

            strategy.start(
                grid=grid,
                initial_arrays=ArrayRecord(model.state_dict()),
                num_rounds=cfg.workload.rounds,
                timeout=scfg.timeout_s,
                train_config=ConfigRecord(),
                evaluate_fn=evaluate_fn,
            )
        else:
            server_app = _load_app(app_cfg.server, "workload.app.server")
            context = Context(
                run_id=RUN_ID,
                node_id=SERVER_NODE_ID,
                node_config={},
                state=RecordDict(),
                run_config=dict(app_cfg.run_config),
            )
            server_app(grid, context)
    grid.ledger.close(grid.now_s)
    rounds = _round_rows(grid.phases, evals, app_cfg)
    clients = [c for p in grid.phases for c in p.clients]
    return VariantResult(scfg.name, rounds, clients, _summary(cfg, scfg, rounds, grid))


# --- the job -------------------------------------------------------------------------------
def _build_task(cfg: Config, fleet: Fleet) -> FederatedTask:
    d, w = cfg.dataset, cfg.workload
    try:
        data = load_dataset(d.name, path=d.path, seed=cfg.seed, num_samples=d.num_samples)
        part_seed = int(stream(cfg.seed, "partition").integers(2**31))
        if d.partition == "sampled":  # lazy: a device's partition is drawn when it is sampled
            parts = SampledPartitions(len(data.y_train), len(fleet), d.samples_per_device, seed=part_seed)
        else:
            parts = partition_indices(
                data.y_train.numpy(),
                len(fleet),
                d.partition,
                seed=part_seed,
                alpha=d.alpha,
                shards_per_client=d.shards_per_client,
            )
        model_seed = int(stream(cfg.seed, "model").integers(2**31))

        def make_model() -> torch.nn.Module:
            return build_model(w.model, data.input_shape, data.num_classes, seed=model_seed)

        make_model()
    except (FileNotFoundError, ValueError) as exc:
        raise ConfigError(str(exc).splitlines()[0]) from None
    return FederatedTask(
        data=data,
        partitions=parts,
        build_model=make_model,
        local_epochs=w.local_epochs,
        batch_size=w.batch_size,
        lr=w.lr,
        momentum=w.momentum,
        weight_decay=w.weight_decay,
        lr_decay=w.lr_decay,
    )


def prepare(cfg: Config):
    """Everything a job needs, built and checked before anything is written."""
    variants = strategy_variants(cfg)
    for v in variants:
        try:
            with _flower_log(cfg.log_level):
                _strategy(v, cfg.fleet.num_devices)
        except (TypeError, ValueError) as exc:
            message = str(exc).splitlines()[0]
            raise ConfigError(
                message if message.startswith("strategy") else f"strategy.params={v.params}: {message}"
            ) from None
    try:
        fleet = build_fleet(
            dict(cfg.fleet.mix), cfg.fleet.num_devices, spread=cfg.fleet.spread, rng=stream(cfg.seed, "fleet")
        )
        link = build_link(cfg.channel)
    except ValueError as exc:
        raise ConfigError(str(exc).splitlines()[0]) from None
    task = None
    if cfg.workload.app.client is None:
        task = _build_task(cfg, fleet)
        _check_fits_somewhere(cfg, task.build_model(), task.data, fleet)
        if cfg.workload.vectorize:
            from experiments.federated.vectorized import unsupported

            reason = unsupported(task.build_model())
            if reason:
                raise ConfigError(
                    f"workload.vectorize=True: workload.model={cfg.workload.model!r} cannot be trained "
                    f"client-stacked: {reason}; allowed: false"
                )
    else:
        _load_app(cfg.workload.app.server, "workload.app.server")
        _load_app(cfg.workload.app.client, "workload.app.client")
    return variants, fleet, link, task


def run(cfg: Config, out_dir: Path | str, *, in_sweep: bool = False):
    """Run the job `cfg` and write its reports under `out_dir`; returns the summary rows (the
    federated job: a list of dicts, one per strategy, written without pandas; NoNN, NAIR and
    mcPipe: a DataFrame).

    One strategy: rounds.csv, clients.csv, summary.csv in `out_dir`. Several (`compare`):
    one folder per strategy, and comparison.csv in `out_dir`. Accuracy plots beside them (in
    a sweep, the comparison and the plots are written once for the whole sweep instead).
    """
    out_dir = Path(out_dir)
    variants, fleet, link, task = prepare(cfg)
    results, wall_s = [], {}
    t0 = time.perf_counter()
    with make_backend(
        cfg, task=task if cfg.workload.vectorize else None
    ) as backend:  # one for every strategy (one FLOP cache; Ray started once)
        start_s = round(time.perf_counter() - t0, 3)
        for scfg in variants:
            t0 = time.perf_counter()
            results.append(simulate(cfg, scfg, fleet, link, task, progress=cfg.progress, backend=backend))
            wall_s[scfg.name] = round(time.perf_counter() - t0, 3)
    for res in results:
        folder = out_dir / res.strategy if len(results) > 1 else out_dir
        write_rows(res.rounds, folder / "rounds.csv", ROUND_COLUMNS)
        write_rows(res.clients, folder / "clients.csv", CLIENT_COLUMNS)
        write_rows([res.summary], folder / "summary.csv")
    # this machine's timings: not simulated, not reproducible, so never in a CSV
    write_json(
        {"backend": cfg.backend, "backend_start_s": start_s, "wall_s_per_strategy": wall_s}, out_dir / "wallclock.json"
    )
    summary = [r.summary for r in results]
    if not in_sweep:  # a sweep compares and plots once, over all its jobs
        if len(results) > 1:
            write_rows(summary, out_dir / "comparison.csv")
        rounds = [{**vars(row), "strategy": r.strategy} for r in results for row in r.rounds]
        if cfg.plots and any(not math.isnan(row["accuracy"]) for row in rounds):  # an app may report none
            plot_accuracy(rounds, ["strategy"], out_dir, title=f"{cfg.dataset.name}, {cfg.dataset.partition}")
    return summary

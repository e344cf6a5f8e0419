"""Building a federated job from its config: the compared strategies, the fleet, the link, the
data partitions and model of the built-in task (or the user's Flower apps), each checked
before anything runs or is written."""

from __future__ import annotations

import contextlib
import importlib
import logging
from collections.abc import Iterator
from dataclasses import replace

import torch

from devices import Fleet, build_fleet
from experiments.common.data import Dataset, load_dataset
from experiments.common.models import build_model
from experiments.federated.partition import SampledPartitions, partition_indices
from experiments.federated.task import FederatedTask
from sim.config import Config, ConfigError, StrategyConfig
from sim.meter import WorkMeter
from sim.net import build_link
from sim.net.build import with_capacity
from sim.seeding import stream
from strategies import STRATEGIES, build_strategy

__all__ = ["build_strategy_of", "flower_log", "load_app", "prepare", "strategy_variants"]


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


def load_app(ref: str, setting: str):
    module, _, attr = ref.partition(":")
    if not module or not attr:
        raise ConfigError(f"{setting}={ref!r}: give it as 'package.module:attr'")
    try:
        app = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{setting}={ref!r}: cannot import it ({exc})") from None
    from flwr.clientapp import ClientApp
    from flwr.serverapp import ServerApp

    kind = ServerApp if setting.endswith("server") else ClientApp
    if not isinstance(app, kind):
        raise ConfigError(f"{setting}={ref!r}: is a {type(app).__name__}, not a Flower {kind.__name__}")
    return app


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
def flower_log(log_level: str) -> Iterator[None]:
    """Flower's own log at `log_level` (quiet by default), restored after. Under Hydra (the root
    logger has its console and log-file handlers) Flower's own console handler is set aside, so
    that each Flower line shows once and lands in the run's log file too."""
    flwr_log = logging.getLogger("flwr")
    old_level, old_handlers = flwr_log.level, list(flwr_log.handlers)
    flwr_log.setLevel(log_level.upper())
    if logging.getLogger().handlers and flwr_log.propagate:
        for h in old_handlers:
            flwr_log.removeHandler(h)
    try:
        yield
    finally:
        flwr_log.setLevel(old_level)
        for h in old_handlers:
            if h not in flwr_log.handlers:
                flwr_log.addHandler(h)


def build_strategy_of(scfg: StrategyConfig, num_devices: int):
    return build_strategy(
        scfg.name,
        scfg.params,
        fraction_train=scfg.fraction_train,
        fraction_evaluate=scfg.fraction_evaluate,
        min_train_nodes=min(scfg.min_train_nodes, num_devices),
        min_evaluate_nodes=min(scfg.min_train_nodes, num_devices),
        min_available_nodes=min(2, num_devices),
    )


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
        torch_device=cfg.torch_device,
    )


def prepare(cfg: Config):
    """Everything a job needs, built and checked before anything is written."""
    variants = strategy_variants(cfg)
    for v in variants:
        try:
            with flower_log(cfg.log_level):
                build_strategy_of(v, cfg.fleet.num_devices)
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
    fleet = with_capacity(cfg, fleet)
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
        load_app(cfg.workload.app.server, "workload.app.server")
        load_app(cfg.workload.app.client, "workload.app.client")
    return variants, fleet, link, task

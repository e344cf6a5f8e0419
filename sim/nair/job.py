"""NAIR job: head/tail split inference over a narrow, lossy link (`python -m sim +experiment=nair`).

What runs for real (`experiments.nair`): the original MobileNetV2-style model's training, NAIR's
re-tuning (and its table III ablation), CLIO's single- and multi-tail retraining, the heads' and
tails' forward passes, the payload bytes of every slice (float32 or quantised), JPEG encoding of
the raw input with Pillow. What the simulation decides (`timeline`): for each test image, the
SimPy processes of the IoT device (head compute at its FLOP rate, then slice after slice over the
medium) and of the edge server, which takes what has arrived by each latency budget, each method
one network on one clock (`sim.net`); the channel's packet timing, retransmissions and bit errors come from
`channels.transfer`, and the flipped bits are applied to the real payload bytes before the tail
decodes them. `methods` runs one method end to end; `report` writes the tables and plots.

Reports (in the run folder): table2.csv (one row per method, one column per latency budget,
and the overall accuracy), latency.csv (long form, with what was delivered and its cost),
ablation.csv (table III), corruption.csv (figure 5: each split's output through the link at
each bit error rate), importance.csv (figure 6), cost.csv (tail parameters, head compute,
transfer time and energy), summary.csv (table II with the settings, one row per method; a
sweep's comparison.csv gathers them), comparison.csv (outside a sweep),
timeline_<method>.csv (device and server states, the first episodes), plots, wallclock.json.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from channels import Link
from devices import CATALOGUE, DeviceProfile
from experiments.common.data import Dataset, load_dataset
from experiments.common.torchdev import device_of
from experiments.nair.analysis import corruption_table, importance_table
from experiments.nair.model import build_splitnet
from experiments.nair.trained import NAIR_VARIANTS, Models, build_models
from sim.backends import make_executor
from sim.config import Config, ConfigError, check_workload
from sim.meter import WorkMeter
from sim.nair.methods import METHODS, RAW_METHODS, MethodResult, evaluate
from sim.nair.report import (
    Flops,
    accuracy_tables,
    cost_table,
    plots,
    say,
    summary_table,
    write_tables,
    write_timelines,
)
from sim.net import build_link
from sim.report import write_json
from sim.seeding import stream

__all__ = ["METHODS", "run"]


def _load(cfg: Config) -> Dataset:
    """The dataset, cut to `workload.train_samples` / `test_samples` when set."""
    d = cfg.dataset
    try:
        data = load_dataset(d.name, path=d.path, seed=cfg.seed, num_samples=d.num_samples)
    except (FileNotFoundError, ValueError) as exc:
        raise ConfigError(str(exc).splitlines()[0]) from None
    n = cfg.workload
    if n.train_samples is None and n.test_samples is None:
        return data
    tr = slice(0, n.train_samples)
    te = slice(0, n.test_samples)
    return Dataset(data.name, data.x_train[tr], data.y_train[tr], data.x_test[te], data.y_test[te], data.num_classes)


def _link(cfg: Config) -> Link:
    try:
        return build_link(cfg.channel)
    except ValueError as exc:
        raise ConfigError(str(exc).splitlines()[0]) from None


def _work(module: nn.Module, x: torch.Tensor) -> tuple[int, int]:
    """(FLOPs, peak bytes: parameters + activations) of one inference, by FlopCounterMode (where
    the module is; the figures are the same on any device)."""
    meter = WorkMeter()
    with meter, torch.no_grad():
        module(x.to(device_of(module)))
    return meter.flops, meter.peak_bytes


def _head_flops(cfg: Config, data: Dataset, device: DeviceProfile) -> int:
    """The head's FLOPs per image, once the split is known to suit the network and the device:
    `channels_per_unit` divides its channels into at most 256 units, and the head fits in the
    device's memory (the network's shape is the same whatever its weights)."""
    n, k = cfg.workload, cfg.workload.split
    probe = build_splitnet(data.input_shape[0], data.num_classes, n.input_size)
    channels = probe.channels(k)
    check_workload(
        channels % n.channels_per_unit == 0,
        "channels_per_unit",
        n.channels_per_unit,
        f"must divide the {channels} channels at split {k}",
    )
    check_workload(
        channels // n.channels_per_unit <= 256, "channels_per_unit", n.channels_per_unit, "at most 256 units per split"
    )
    head_flops, head_bytes = _work(probe.head(k), data.x_test[:1])
    if head_bytes > device.memory_bytes:
        raise ConfigError(
            f"workload.split={k}: the head needs {head_bytes} bytes, more than "
            f"workload.device={n.device!r} has ({device.memory_bytes}); allowed: an earlier split "
            f"or a larger device"
        )
    return head_flops


def _evaluations(
    cfg: Config, models: Models, x: torch.Tensor, y: torch.Tensor, head_s: float, flops: Flops
) -> list[tuple]:
    """The arguments of `evaluate` for every method: its network (CLIO multi-tail: and its
    tails), its sending order (NAIR: the index vector; the others: native), and what the server
    runs per budget (the tail; the raw input: the whole model)."""
    n = cfg.workload
    device, server = CATALOGUE[n.device], CATALOGUE[n.server]
    native = np.arange(models.original.channels(n.split) // n.channels_per_unit)
    calls = []
    for method in METHODS:
        if method in RAW_METHODS:
            calls.append((cfg, method, models.original, None, native, x, y, head_s, device, server, flops.full))
        else:
            calls.append(
                (
                    cfg,
                    method,
                    models.nets[method],
                    models.clio_tails if method == "clio_mt" else None,
                    models.order if method.startswith("nair") else native,
                    x,
                    y,
                    head_s,
                    device,
                    server,
                    flops.tail,
                )
            )
    return calls


def _flops(cfg: Config, models: Models, x: torch.Tensor, head_flops: int) -> Flops:
    """FLOPs of one inference: the head, the original tail and the whole original model."""
    o1 = models.original.forward_to(x[:1].to(device_of(models.original)), cfg.workload.split).detach()
    return Flops(head_flops, _work(models.original.tail(cfg.workload.split), o1)[0], _work(models.original, x[:1])[0])


def _simulate(
    cfg: Config, data: Dataset, head_flops: int, device: DeviceProfile, walls: dict
) -> tuple[Models, Flops, dict[str, MethodResult], dict]:
    """Every model (trained or from the cache), then every method's link and inference at once
    (each has its own link streams, models and network), on `cfg.backend`; Ray starts at the
    first call with work. Returns the models, their FLOPs, the results and the executor's
    timings."""
    x, y = data.x_test, data.y_test
    with make_executor(cfg) as executor:
        t = time.perf_counter()
        models = build_models(
            cfg.workload,
            data,
            executor,
            cfg.cache_dir,
            seed=cfg.seed,
            net_seed=int(stream(cfg.seed, "nair-model").integers(2**31)),
            train_seed=int(stream(cfg.seed, "nair-train").integers(2**31)),
            say=lambda text: say(cfg, text),
        )
        walls["training_s"] = round(time.perf_counter() - t, 3)
        t = time.perf_counter()
        flops = _flops(cfg, models, x, head_flops)
        say(cfg, f"link and inference: {', '.join(METHODS)}")
        calls = _evaluations(cfg, models, x, y, device.compute_time_s(head_flops), flops)
        results = dict(zip(METHODS, executor.map(evaluate, calls)))
        walls["link_and_inference_s"] = round(time.perf_counter() - t, 3)
    return models, flops, results, executor.timings()


def _tables(
    cfg: Config,
    data: Dataset,
    models: Models,
    results: dict[str, MethodResult],
    link: Link,
    device: DeviceProfile,
    flops: Flops,
) -> dict[str, pd.DataFrame]:
    """Every CSV of the job, by file name."""
    n, k = cfg.workload, cfg.workload.split
    x, y = data.x_test, data.y_test
    say(cfg, "figure 5")
    corruption = corruption_table(
        models.original,
        x,
        y,
        n.corruption_rates,
        n.corruption_mode,
        lambda s, f: int(stream(cfg.seed, "nair-corrupt", s, repr(f)).integers(2**62)),
        link_at=lambda ber: build_link(replace(cfg.channel, ber=ber, mode="raw")),
        bits=n.bits_per_element,
    )
    shape = models.original.forward_to(x[:1].to(device_of(models.original)), k).shape[1:]
    cost = cost_table(cfg, models, results, link, device, CATALOGUE[n.server], flops, shape)
    latency, table, ablation = accuracy_tables(cfg, results)
    importance = importance_table(
        models.nets, ("original", *NAIR_VARIANTS, "clio_st"), k, n.channels_per_unit, n.fold_bn, models.order
    )
    return {
        "table2.csv": table,
        "latency.csv": latency,
        "ablation.csv": ablation,
        "corruption.csv": corruption,
        "importance.csv": importance,
        "cost.csv": cost,
        "summary.csv": summary_table(cfg, data.name, table, cost),
    }


def run(cfg: Config, out_dir: Path | str, *, in_sweep: bool = False) -> pd.DataFrame:
    """Run the NAIR job and write its reports under `out_dir`; returns the summary rows."""
    wall0 = time.perf_counter()
    out_dir = Path(out_dir)
    link = _link(cfg)
    data = _load(cfg)
    device = CATALOGUE[cfg.workload.device]
    head_flops = _head_flops(cfg, data, device)
    walls: dict[str, float] = {}
    models, flops, results, timings = _simulate(cfg, data, head_flops, device, walls)
    tables = _tables(cfg, data, models, results, link, device, flops)
    write_tables(out_dir, tables, in_sweep)
    write_timelines(out_dir, {m: results[m].timeline for m in METHODS}, cfg.plots)
    if cfg.plots:
        c = cfg.channel
        plots(
            out_dir,
            tables["latency.csv"],
            tables["corruption.csv"],
            tables["importance.csv"],
            f"{data.name}, split {cfg.workload.split}, {c.bandwidth_bps / 1e3:g} kbit/s, BER {c.ber:g}",
        )
    walls["total_s"] = round(time.perf_counter() - wall0, 3)
    write_json({**timings, "wall_s": walls, "training": models.meta}, out_dir / "wallclock.json")
    say(cfg, f"done: {out_dir}")
    return tables["summary.csv"]

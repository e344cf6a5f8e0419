"""Settings of the mcPipe workload (`workload=mcpipe`): the schema of `workload.*` and its validation."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

from devices import CATALOGUE
from sim.config import Config, check_workload

__all__ = ["McpipeSettings", "PIPELINES", "REBUILDS", "SCHEDULES", "validate"]

SCHEDULES = ("local", "data_parallel", "pipedream", "mcpipe", "greedy")
PIPELINES = ("pipedream", "mcpipe", "greedy")
REBUILDS = ("materialize", "lowrank")
MAX_FC_DEPTH = 256


@dataclass
class McpipeSettings:
    """mcPipe's models, pipeline sizes, schedules and devices compared (`workload.*`)."""

    name: str = "mcpipe"
    # models trained under every schedule: vgg (VGG-style CNN) | fc (fully connected)
    models: list[str] = field(default_factory=lambda: ["vgg"])
    # pipeline sizes N compared in one job (1 <= N <= the model's layers); figures 2 and 3: 2 and 3
    workers: list[int] = field(default_factory=lambda: [2, 3])
    # schedules: local | data_parallel | pipedream | mcpipe | greedy
    schedules: list[str] = field(default_factory=lambda: ["local", "data_parallel", "pipedream", "mcpipe", "greedy"])
    # device profile of worker i (devices/catalogue.py): devices[i % len(devices)]; local runs on worker 0's
    devices: list[str] = field(default_factory=lambda: ["rpi3_400mhz", "rpi3_400mhz", "rpi3_400mhz"])
    master_device: str = "odroid_xu4"  # holds the data set; only sends (data, labels, averaged weights)
    # flops: balance training FLOPs | time: balance FLOPs / device rate | layers: use boundaries
    partition: str = "flops"
    boundaries: list[int] = field(default_factory=list)  # partition=layers: first layer index of stages 2..N
    microbatch: int = 16  # samples per microbatch (one pipeline step, one weight update)
    depth: Optional[int] = None  # m: microbatches in flight at the first stage (stage s: m - s); null = N
    # mcPipe per layer: vectors (the paper) | weights | auto (the smaller of a pair and a version)
    store: str = "vectors"
    # mcPipe, a later version: materialize (the paper: computed when needed, then deleted) |
    # lowrank (linear layers, plain SGD: kept weights plus the pairs' low-rank terms, never formed)
    rebuild: str = "materialize"
    lr: float = 0.05  # SGD learning rate
    momentum: float = 0.0  # SGD momentum in [0, 1); mcPipe replays updates in order when > 0
    weight_decay: float = 0.0  # L2 coefficient, >= 0
    sim_time_s: float = 4.0  # simulated training time of every run, in seconds
    eval_every_s: float = 0.1  # test accuracy recorded every this many simulated seconds
    accuracy_at_s: Optional[float] = None  # the fixed time the summary reports accuracy at; null = sim_time_s
    target_accuracy: float = 0.9  # for time_to_target_s
    prefetch: int = 2  # microbatches the master may have queued at the first stage
    vgg_widths: list[int] = field(default_factory=lambda: [16, 32])  # channels of each block of two 3x3 convs
    vgg_hidden: int = 64  # units of the fully connected hidden layer after the convolutions
    fc_hidden: int = 256  # fc model: units per hidden layer
    fc_depth: int = 3  # fc model: hidden layers


def _num_layers(m: McpipeSettings, name: str) -> int:
    return 2 * len(m.vgg_widths) + 2 if name == "vgg" else m.fc_depth + 1


def validate(cfg: Config) -> None:
    """Reject any setting no run could use, with a one-line message, before anything runs."""
    m: McpipeSettings = cfg.workload
    _check_names(m)
    _check_pipeline(m)
    _check_training(m)


def _check_names(m: McpipeSettings) -> None:
    """Models, schedules, devices and the models' sizes."""
    from experiments.mcpipe import MODELS  # torch: imported when a job is checked, not for --help

    check_workload(
        bool(m.models) and all(x in MODELS for x in m.models) and len(set(m.models)) == len(m.models),
        "models",
        list(m.models),
        f"give distinct names from: {', '.join(MODELS)}",
    )
    check_workload(
        bool(m.schedules) and all(x in SCHEDULES for x in m.schedules) and len(set(m.schedules)) == len(m.schedules),
        "schedules",
        list(m.schedules),
        f"give distinct names from: {', '.join(SCHEDULES)}",
    )
    check_workload(
        bool(m.devices) and all(d in CATALOGUE for d in m.devices),
        "devices",
        list(m.devices),
        f"give profile names from: {', '.join(sorted(CATALOGUE))}",
    )
    check_workload(
        m.master_device in CATALOGUE, "master_device", m.master_device, f"allowed: {', '.join(sorted(CATALOGUE))}"
    )
    check_workload(
        all(isinstance(w, int) and w >= 1 for w in m.vgg_widths) and len(m.vgg_widths) >= 1,
        "vgg_widths",
        list(m.vgg_widths),
        "give one or more positive channel counts",
    )
    for name, v in (
        ("vgg_hidden", m.vgg_hidden),
        ("fc_hidden", m.fc_hidden),
        ("fc_depth", m.fc_depth),
        ("microbatch", m.microbatch),
        ("prefetch", m.prefetch),
    ):
        check_workload(isinstance(v, int) and v >= 1, name, v, "must be an integer >= 1")
    check_workload(m.fc_depth <= MAX_FC_DEPTH, "fc_depth", m.fc_depth, f"allowed range is 1..{MAX_FC_DEPTH}")


def _check_pipeline(m: McpipeSettings) -> None:
    """Pipeline sizes, their partition into stages and the weight store."""
    from experiments.mcpipe import PARTITIONS
    from experiments.mcpipe.versions import STORES

    check_workload(
        bool(m.workers) and len(set(m.workers)) == len(m.workers),
        "workers",
        list(m.workers),
        "give one or more distinct pipeline sizes",
    )
    for name in m.models:
        top = _num_layers(m, name)
        check_workload(
            all(isinstance(n, int) and 1 <= n <= top for n in m.workers),
            "workers",
            list(m.workers),
            f"each must be an integer in [1, {top}] (the {name} model has {top} layers)",
        )
    check_workload(m.partition in PARTITIONS, "partition", m.partition, f"allowed: {', '.join(PARTITIONS)}")
    if m.partition == "layers":
        b = list(m.boundaries)
        top = min(_num_layers(m, name) for name in m.models)
        check_workload(
            all(isinstance(i, int) for i in b) and b == sorted(set(b)) and all(1 <= i < top for i in b),
            "boundaries",
            b,
            f"give increasing layer indices in [1, {top - 1}]",
        )
        check_workload(
            all(n == len(b) + 1 for n in m.workers),
            "boundaries",
            b,
            f"{len(b)} cuts make {len(b) + 1} stages; set workload.workers=[{len(b) + 1}]",
        )
    check_workload(
        m.depth is None or (isinstance(m.depth, int) and m.depth >= 1),
        "depth",
        m.depth,
        "must be null or an integer >= 1",
    )
    check_workload(m.store in STORES, "store", m.store, f"allowed: {', '.join(STORES)}")
    check_workload(m.rebuild in REBUILDS, "rebuild", m.rebuild, f"allowed: {', '.join(REBUILDS)}")


def _check_training(m: McpipeSettings) -> None:
    """SGD and the simulated time the runs train for."""
    check_workload(
        m.rebuild != "lowrank" or (m.momentum == 0 and m.weight_decay == 0),
        "rebuild",
        m.rebuild,
        "lowrank needs plain SGD (workload.momentum=0, workload.weight_decay=0)",
    )
    check_workload(math.isfinite(m.lr) and m.lr > 0, "lr", m.lr, "must be a positive number")
    check_workload(0.0 <= m.momentum < 1.0, "momentum", m.momentum, "allowed range is [0, 1)")
    check_workload(
        math.isfinite(m.weight_decay) and m.weight_decay >= 0, "weight_decay", m.weight_decay, "must be >= 0"
    )
    check_workload(
        math.isfinite(m.sim_time_s) and m.sim_time_s > 0, "sim_time_s", m.sim_time_s, "must be a positive number"
    )
    check_workload(
        math.isfinite(m.eval_every_s) and 0 < m.eval_every_s <= m.sim_time_s,
        "eval_every_s",
        m.eval_every_s,
        f"allowed range is (0, sim_time_s={m.sim_time_s}]",
    )
    check_workload(
        m.accuracy_at_s is None or 0 < m.accuracy_at_s <= m.sim_time_s,
        "accuracy_at_s",
        m.accuracy_at_s,
        f"must be null or in (0, sim_time_s={m.sim_time_s}]",
    )
    check_workload(0.0 <= m.target_accuracy <= 1.0, "target_accuracy", m.target_accuracy, "allowed range is [0, 1]")

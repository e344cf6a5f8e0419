"""Typed configuration: the dataclass schemas behind `conf/`, and their validation.

Hydra registers these schemas (in `sim/__main__.py`); everything else sees only these
dataclasses. `validate` turns a bad value into a `ConfigError` whose one-line message names
the setting and what is allowed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

__all__ = [
    "AppConfig", "ChannelConfig", "Config", "ConfigError", "DatasetConfig", "FleetConfig",
    "RayConfig", "StrategyConfig", "WorkloadConfig", "validate", "WORKLOADS",
    "NonnConfig", "NairConfig", "McpipeConfig",
]

# workload name -> the module of `sim` that runs it (`run(cfg, out_dir, in_sweep=)`)
WORKLOADS = {"federated": "sim.runner", "nonn": "sim.nonn", "nair": "sim.nair", "mcpipe": "sim.mcpipe"}


class ConfigError(ValueError):
    """A setting has a value the simulator cannot use; the message is one line."""


@dataclass
class FleetConfig:
    # profile name -> count (integers summing to num_devices) or fraction
    mix: dict[str, float] = field(default_factory=lambda: {"rpi3_400mhz": 0.5, "odroid_xu4": 0.4, "cortex_m7_512kb": 0.1})
    num_devices: int = 30
    spread: float = 0.1  # per-device uniform factor in [1-s, 1+s] on FLOP rate and power
    availability: float = 1.0  # probability that a sampled device takes part in a round


@dataclass
class ChannelConfig:
    model: str = "independent"  # independent | gilbert_elliott
    ber: float = 0.0  # mean bit error rate
    bandwidth_bps: float = 1.0e6
    latency_s: float = 0.01
    mode: str = "arq"  # arq: CRC + resend; raw: no CRC, bits flipped in the payload
    packet_bytes: int = 256
    header_bytes: int = 16
    max_attempts: int = 8
    burst_bits: float = 1000.0  # gilbert_elliott: mean length of a bad burst, in bits
    bad_ber: float = 0.05  # gilbert_elliott: bit error rate inside a burst


@dataclass
class StrategyConfig:
    name: str = "fedavg"
    fraction_train: float = 0.3
    fraction_evaluate: float = 0.0
    min_train_nodes: int = 2
    timeout_s: Optional[float] = 60.0  # round deadline in simulated seconds; null = none
    params: dict[str, Any] = field(default_factory=dict)  # extra constructor arguments


@dataclass
class DatasetConfig:
    name: str = "digits"  # digits | synthetic | mnist | cifar10
    path: Optional[str] = None  # local folder for mnist / cifar10
    num_samples: Optional[int] = None  # synthetic only
    partition: str = "iid"  # iid | dirichlet | shards | sampled (lazy: any number of devices, see below)
    samples_per_device: Optional[int] = None  # sampled: distinct samples each device draws (null = samples / devices, >= 1)
    alpha: float = 0.5  # dirichlet concentration
    shards_per_client: int = 2


@dataclass
class AppConfig:
    """A user's own Flower apps, as `"package.module:attr"`; both unset = built-in apps."""

    server: Optional[str] = None
    client: Optional[str] = None
    run_config: dict[str, Any] = field(default_factory=dict)
    accuracy_metric: str = "accuracy"  # metric read from evaluate replies for rounds.csv
    loss_metric: str = "loss"


@dataclass
class WorkloadConfig:
    name: str = "federated"
    model: str = "cnn"  # cnn | mlp | fedmax_cifar_cnn
    rounds: int = 30
    local_epochs: int = 2
    batch_size: int = 16
    lr: float = 0.05
    momentum: float = 0.5
    weight_decay: float = 5.0e-4
    lr_decay: float = 0.996  # lr multiplied by this each round (FedMAX's schedule)
    optimizer_copies: int = 1  # optimiser state, in copies of the parameters (SGD momentum: 1)
    # the built-in ClientApp's sampled clients of a round trained together (torch.func.vmap over
    # their stacked weights; docs/scale.md, section 6): same simulated outcome, faster rounds;
    # backend=local and the built-in models only
    vectorize: bool = False
    target_accuracy: float = 0.8
    app: AppConfig = field(default_factory=AppConfig)


# --- NoNN (issue 3): settings of `sim/nonn.py`; `conf/workload/nonn.yaml` selects it -------------
@dataclass
class NonnConfig:
    num_students: int = 2  # k: partitions of the teacher's fconv, one student each
    # teacher: a pre-activation WRN-depth-width, trained on (1 - val_fraction) of the training set
    teacher_depth: int = 16
    teacher_width: float = 4.0
    teacher_epochs: int = 15
    val_fraction: float = 0.1
    # knowledge partitioning (filter activation network, Louvain)
    rule: str = "ah"  # ah (activation hubs) | ca (co-activation)
    top_filters: Optional[int] = 50  # per image, only this many most active filters connect; null = all
    edge_percentile: float = 99.0  # edges below this percentile of the non-zero weights are dropped
    resolution: float = 0.7  # Louvain resolution
    balance: bool = True  # cut communities larger than 1/k of the kept filters so partitions come out near-equal
    # students: sized to the per-device budgets (memory = params x bytes_per_param)
    student_depth: int = 16
    student_width: Optional[float] = None  # WRN width multiplier; null = the widest that meets both budgets
    common_group: bool = True  # the first group shared by all students (replicated on every device)
    memory_budget_bytes: int = 131072
    bytes_per_param: float = 1.0  # 8-bit quantised weights
    flop_budget: float = 3.5e6  # FLOPs per image per student (PyTorch count: 2 per multiply-accumulate)
    student_epochs: int = 15
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5.0e-4
    # distillation: (1 - alpha) CE + alpha * kd_scale * KL(T-softened), + beta * activation transfer
    alpha: float = 0.9
    temperature: float = 4.0
    kd_scale: Optional[float] = None  # null = 2 T^2 (the authors' code); 1 = the paper's eq. 1 as written
    beta: float = 1.0e4  # activation-transfer weight (the authors' code), when beta_search is empty
    at_beta: float = 1.0e3  # attention-transfer weight of the ATKD baseline, when at_beta_search is empty
    # the paper picks the best beta for NoNN and for ATKD from 1e1..1e4: by validation accuracy here
    beta_search: list[float] = field(default_factory=lambda: [1.0e1, 1.0e2, 1.0e3, 1.0e4])
    at_beta_search: list[float] = field(default_factory=lambda: [1.0e1, 1.0e2, 1.0e3, 1.0e4])
    baselines: bool = True  # train the single KD and ATKD students and NoNN with KD alone
    # distributed inference on the simulated fleet
    device: str = "rpi3_400mhz"  # one student per device (homogeneous case)
    big_device: str = "odroid_xu4"  # the heterogeneous case: this device takes 1..k students
    server: str = "edge_server"  # the aggregator: sends images, applies the FC layer
    split_model: str = "atkd"  # the horizontally split baseline: atkd (the single student) | teacher
    deadline_s: float = 2.0  # the aggregator applies the FC to what arrived by then (simulated s)
    timing_images: int = 20  # inferences simulated per scenario for latency and energy
    calibrate: bool = True  # also simulate the paper's own deployments (tables 6-8) into calibration.csv


# --- NAIR (issue 4): settings of `sim/nair.py`; `conf/workload/nair.yaml` selects it ---------------
@dataclass
class NairConfig:
    # the network and the split
    split: int = 3  # O_k sent after stage k of the MobileNetV2-style net: 1 (stem) .. 8 (last 1x1 conv)
    input_size: int = 16  # the sensor image is upsampled to input_size x input_size in the head (>= 8)
    channels_per_unit: int = 2  # channels per slice unit (the paper: every second channel); divides C_k
    bits_per_element: int = 32  # 32 = float32 as is; 1..16 = uniform quantisation between a slice's min and max
    fold_bn: bool = True  # eq. 8 on the filter as applied (conv x BN scale); false = raw conv weights
    # latency budgets (s) from the sensor reading to the tail's input: table II's columns
    latencies_s: list[float] = field(default_factory=lambda: [0.03, 0.05, 0.07, 0.09, 0.12, 0.16])
    device: str = "rpi3_400mhz"  # the IoT device running the head (a devices.CATALOGUE name)
    server: str = "edge_server"  # the edge server running the tail(s)
    # the original model
    epochs: int = 20
    lr: float = 0.05
    batch_size: int = 64
    weight_decay: float = 5.0e-4
    # NAIR's re-tuning (algorithm 2) and CLIO's retraining, both from the original weights
    w_non: float = 2.0  # eq. 11 non-linear mapping weight
    penalty_weight: float = 0.01  # coefficient of the penalty P of eq. 12 in the loss (eq. 13)
    retune_epochs: int = 4
    retune_lr: float = 0.01  # cosine-annealed from here (the paper: 1e-2)
    retune_batch_size: int = 80  # the paper: 80
    clio_training: str = "sum"  # sum: every width each minibatch (the paper's eqs. 3-4) | sample: one drawn width (CLIO's code)
    clio_head_emphasis: float = 0.0  # alpha_j ~ (J-j+1)^this; 0 = equal (CLIO^n), > 0 favours narrow prefixes (CLIO^l)
    # figure 5: accuracy when a fraction of the elements sent at a split is corrupted
    corruption_fractions: list[float] = field(default_factory=lambda: [0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5])
    corruption_mode: str = "erase"  # erase: corrupted elements arrive as 0 | noise: uniform in the tensor's range
    # data subsets (null = all): tiny runs and tests
    train_samples: Optional[int] = None
    test_samples: Optional[int] = None


# --- mcPipe (issue 5): settings of `sim/mcpipe.py`; `conf/workload/mcpipe.yaml` selects it ---------
@dataclass
class McpipeConfig:
    # models trained under every schedule: vgg (VGG-style CNN) | fc (fully connected)
    models: list[str] = field(default_factory=lambda: ["vgg"])
    # pipeline sizes N compared in one job (1 <= N <= the model's layers); figures 2 and 3: 2 and 3
    workers: list[int] = field(default_factory=lambda: [2, 3])
    # schedules: local | data_parallel | pipedream | mcpipe | greedy
    schedules: list[str] = field(default_factory=lambda: ["local", "data_parallel", "pipedream", "mcpipe", "greedy"])
    # device profile of worker i (devices/catalogue.py): devices[i % len(devices)]; local runs on worker 0's
    devices: list[str] = field(default_factory=lambda: ["rpi3_400mhz", "rpi3_400mhz", "rpi3_400mhz"])
    master_device: str = "odroid_xu4"  # holds the data set; only sends (data, labels, averaged weights)
    partition: str = "flops"  # flops: balance training FLOPs | time: balance FLOPs / device rate | layers: use boundaries
    boundaries: list[int] = field(default_factory=list)  # partition=layers: first layer index of stages 2..N
    microbatch: int = 16  # samples per microbatch (one pipeline step, one weight update)
    depth: Optional[int] = None  # m: microbatches in flight at the first stage (stage s: m - s); null = N
    store: str = "vectors"  # mcPipe per layer: vectors (the paper) | weights | auto (the smaller of a pair and a version)
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


@dataclass
class RayConfig:
    """`backend=ray`: where the clients' computations (federated), or the independent trainings and
    runs of NoNN, NAIR and mcPipe, run (see docs/scale.md)."""

    # null: start a local Ray instance for the job (and stop it after); or join a running
    # cluster: 'auto' (one started on this machine with `ray start`), 'HOST:PORT', 'ray://HOST:10001'
    address: Optional[str] = None
    num_cpus: Optional[int] = None  # CPUs of the local instance (null = all of this machine's); ignored with address
    num_workers: Optional[int] = None  # worker actors, or NoNN/NAIR/mcPipe tasks at a time, one CPU each (null = one per CPU)


@dataclass
class Config:
    seed: int = 0
    # trained models (a NoNN teacher, NAIR's original model, ...) cached here, keyed by their
    # config, so a sweep does not retrain them; null = no cache
    cache_dir: Optional[str] = ".cache/edgesim"
    backend: str = "local"  # local: in this process, one computation after another | ray: in parallel on Ray
    ray: RayConfig = field(default_factory=RayConfig)
    # torch intra-op threads of every computation of a job, in every workload (the federated
    # clients on every back end and the server; NoNN, NAIR, mcPipe): fixed, so that the results
    # do not depend on the back end, the launcher or the cores of the machine (torch splits some
    # float reductions by thread, which changes the last bits; the model cache keys on it); the
    # small models here are also no faster on more threads; null = whatever the process has
    torch_threads: Optional[int] = 1
    compare: list[str] = field(default_factory=list)  # strategies run side by side in one job
    log_level: str = "ERROR"  # Flower's own logging (INFO shows every round)
    progress: bool = True
    # the PNG plots beside the CSVs (false: CSVs only, and no matplotlib, which costs ~0.6 s of a
    # short job here: for benchmarks and for sweeps of many short jobs)
    plots: bool = True
    fleet: FleetConfig = field(default_factory=FleetConfig)
    channel: ChannelConfig = field(default_factory=ChannelConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    workload: WorkloadConfig = field(default_factory=WorkloadConfig)
    nonn: NonnConfig = field(default_factory=NonnConfig)
    nair: NairConfig = field(default_factory=NairConfig)
    mcpipe: McpipeConfig = field(default_factory=McpipeConfig)


def _check(ok: bool, setting: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{setting}={value!r}: {allowed}")


def _positive(setting: str, value: float) -> None:
    _check(isinstance(value, (int, float)) and math.isfinite(value) and value > 0, setting, value, "must be a positive number")


def validate(cfg: Config) -> None:
    """Reject values no run could use; names of registries are checked where they live."""
    c = cfg.channel
    _check(isinstance(c.ber, (int, float)) and 0.0 <= c.ber <= 0.5, "channel.ber", c.ber, "allowed range is [0, 0.5]")
    _positive("channel.bandwidth_bps", c.bandwidth_bps)
    _check(c.latency_s >= 0, "channel.latency_s", c.latency_s, "must be >= 0")
    _check(c.mode in ("arq", "raw"), "channel.mode", c.mode, "allowed: arq, raw")
    _check(c.model in ("independent", "gilbert_elliott"), "channel.model", c.model, "allowed: gilbert_elliott, independent")
    _check(c.packet_bytes >= 1, "channel.packet_bytes", c.packet_bytes, "must be >= 1")
    _check(c.max_attempts >= 1, "channel.max_attempts", c.max_attempts, "must be >= 1")
    f = cfg.fleet
    _check(bool(f.mix), "fleet.mix", dict(f.mix), "empty; give at least one device profile")
    _check(f.num_devices >= 1, "fleet.num_devices", f.num_devices, "must be >= 1 (an empty fleet cannot train)")
    _check(0.0 < f.availability <= 1.0, "fleet.availability", f.availability, "allowed range is (0, 1]")
    s = cfg.strategy
    _check(0.0 < s.fraction_train <= 1.0, "strategy.fraction_train", s.fraction_train, "allowed range is (0, 1]")
    _check(0.0 <= s.fraction_evaluate <= 1.0, "strategy.fraction_evaluate", s.fraction_evaluate, "allowed range is [0, 1]")
    if s.timeout_s is not None:
        _positive("strategy.timeout_s", s.timeout_s)
    w = cfg.workload
    _check(w.name in WORKLOADS, "workload.name", w.name, f"allowed: {', '.join(sorted(WORKLOADS))}")
    _check(w.rounds >= 1, "workload.rounds", w.rounds, "must be >= 1")
    _check(w.local_epochs >= 1, "workload.local_epochs", w.local_epochs, "must be >= 1")
    _check(w.batch_size >= 1, "workload.batch_size", w.batch_size, "must be >= 1")
    _positive("workload.lr", w.lr)
    _check(0.0 <= w.target_accuracy <= 1.0, "workload.target_accuracy", w.target_accuracy, "allowed range is [0, 1]")
    _check((w.app.server is None) == (w.app.client is None), "workload.app", f"server={w.app.server}, client={w.app.client}",
           "give both a ServerApp and a ClientApp as 'package.module:attr', or neither")
    d = cfg.dataset
    _check(d.samples_per_device is None or (isinstance(d.samples_per_device, int) and d.samples_per_device >= 1),
           "dataset.samples_per_device", d.samples_per_device, "must be an integer >= 1, or null")
    _check(cfg.backend in ("local", "ray"), "backend", cfg.backend, "allowed: local, ray")
    if w.vectorize:
        _check(w.name == "federated", "workload.vectorize", True, f"applies to workload.name=federated only (not {w.name})")
        _check(w.app.client is None, "workload.vectorize", True,
               "trains the built-in ClientApp's clients together; with workload.app.client set it must be false")
        _check(cfg.backend == "local", "workload.vectorize", True,
               f"needs backend=local (backend={cfg.backend} runs each client on its own); allowed with ray: false")
    r = cfg.ray
    for name in ("num_cpus", "num_workers"):
        v = getattr(r, name)
        _check(v is None or (isinstance(v, int) and v >= 1), f"ray.{name}", v, "must be an integer >= 1, or null")
    _check(r.address is None or (isinstance(r.address, str) and r.address.strip() != ""), "ray.address", r.address,
           "give 'auto', 'HOST:PORT' or 'ray://HOST:PORT', or null to start a local Ray")
    _check(cfg.torch_threads is None or (isinstance(cfg.torch_threads, int) and cfg.torch_threads >= 1),
           "torch_threads", cfg.torch_threads, "must be an integer >= 1, or null")

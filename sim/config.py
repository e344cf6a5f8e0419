"""Typed configuration: the settings every job shares, the sections a workload may use, and the
`Workload` record each workload registers (its own `workload.*` schema, the sections it uses,
its validation and its job).

Hydra registers these schemas (in `sim/__main__.py`); everything else sees only these
dataclasses. `validate_common` turns a bad value into a `ConfigError` whose one-line message
names the setting and what is allowed; `sim.jobs.validate` is the one entry point that also
runs the workload's own checks.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional

__all__ = [
    "COMMON_SECTIONS",
    "ChannelConfig",
    "Config",
    "ConfigError",
    "DatasetConfig",
    "FleetConfig",
    "RayConfig",
    "StrategyConfig",
    "Workload",
    "check",
    "check_torch_device",
    "positive",
    "validate_common",
]

TRACKERS = ("none", "mlflow", "tensorboard")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
BACKENDS = ("local", "processes", "ray")  # as sim.backends.BACKENDS (which imports torch)

# top-level settings of every job; a workload names the other sections it reads (`Workload.uses`)
COMMON_SECTIONS = frozenset(
    {
        "seed",
        "resume",
        "cache_dir",
        "backend",
        "ray",
        "processes",
        "torch_threads",
        "torch_device",
        "log_level",
        "progress",
        "plots",
        "tracking",
        "tracking_uri",
        "devices",
        "workload",
        "experiment",
        "hydra",
    }
)


class ConfigError(ValueError):
    """A setting has a value the simulator cannot use; the message is one line."""


@dataclass
class FleetConfig:
    """The devices of a run: how many, the mix of profiles, their availability and placement (`fleet.*`)."""

    # profile name -> count (integers summing to num_devices) or fraction; `fleet.mix={odroid_xu4:1}`
    # is the whole mix (it replaces the fleet option's), `fleet.mix.odroid_xu4=1` sets one share
    mix: dict[str, float] = field(
        default_factory=lambda: {"rpi3_400mhz": 0.5, "odroid_xu4": 0.4, "cortex_m7_512kb": 0.1}
    )
    num_devices: int = 30
    spread: float = 0.1  # per-device uniform factor in [1-s, 1+s] on FLOP rate and power
    # long-run fraction of the time a device is online: each device alternates online and offline
    # periods (exponential, means online_s and online_s * (1 - a) / a) on the clock; 1: always online
    availability: float = 1.0
    online_s: float = 600.0  # mean length of an online period, simulated seconds
    availability_trace: Optional[str] = None  # a trace file of online intervals instead (sim/conf/traces/README.md)
    capacity_trace: Optional[str] = None  # a trace file of per-device FLOP rate and bandwidth
    battery_j: Any = None  # joules per profile name (others: mains powered); null: none
    server: Optional[str] = (
        "edge_server"  # the server's profile: it aggregates and evaluates on the clock; null: at once
    )
    offer: str = (
        "idle"  # the devices get_node_ids offers: idle (online, charged, not busy) | all (every registered one)
    )


@dataclass
class ChannelConfig:
    """The radio links' defaults: bandwidth, latency, bit errors and how a payload crosses them (`channel.*`)."""

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
    # the medium: dedicated (a link per device) | shared (cells whose capacity concurrent transfers share)
    medium: str = "dedicated"
    cells: int = 1  # shared: access points; device d attaches to cell d % cells
    cell_up_bps: Optional[float] = None  # shared: a cell's uplink capacity (null: bandwidth_bps)
    cell_down_bps: Optional[float] = None  # shared, full duplex: a cell's downlink capacity (null: bandwidth_bps)
    # shared: half (one channel both directions share, as Wi-Fi and 802.15.4: cell_up_bps) | full (up and down apart)
    duplex: str = "half"
    # per-device links: same (every device the values above) | spread (bandwidth and BER each times
    # Uniform[1-s, 1+s), per device and direction) | distance (distance in a disk -> path loss -> SNR -> BER)
    links: str = "same"
    spread: float = 0.5
    radius_m: float = 60.0  # distance: devices uniform over a disk of this radius around their access point
    exponent: float = 3.0  # distance: path-loss exponent
    ref_loss_db: float = 40.0  # distance: path loss at 1 m (free space at 2.4 GHz)
    tx_power_dbm: float = 0.0
    noise_dbm: float = -105.0  # thermal noise over ~1 MHz plus a 9 dB noise figure
    modulation: str = "qpsk"  # distance: bpsk | qpsk | 16qam | 64qam | fsk
    up_scale: float = 1.0  # uplink bandwidth / downlink bandwidth


@dataclass
class StrategyConfig:
    """Flower's aggregation strategy and its sampling of nodes per round (`strategy.*`)."""

    name: str = "fedavg"
    fraction_train: float = 0.3
    fraction_evaluate: float = 0.0
    min_train_nodes: int = 2
    timeout_s: Optional[float] = 60.0  # round deadline in simulated seconds; null = none
    params: dict[str, Any] = field(default_factory=dict)  # extra constructor arguments


@dataclass
class DatasetConfig:
    """The data set and how it is split across the devices (`dataset.*`)."""

    name: str = "digits"  # digits | mnist5k | synthetic | mnist | cifar10
    path: Optional[str] = None  # local folder for mnist / cifar10
    num_samples: Optional[int] = None  # synthetic only
    partition: str = "iid"  # iid | dirichlet | shards | sampled (lazy: any number of devices, see below)
    samples_per_device: Optional[int] = (
        None  # sampled: distinct samples each device draws (null = samples / devices, >= 1)
    )
    alpha: float = 0.5  # dirichlet concentration
    shards_per_client: int = 2


@dataclass
class RayConfig:
    """`backend=ray`: where the clients' computations (federated), or the independent trainings and
    runs of NoNN, NAIR and mcPipe, run (see docs/scale.md)."""

    # null: start a local Ray instance for the job (and stop it after); or join a running
    # cluster: 'auto' (one started on this machine with `ray start`), 'HOST:PORT', 'ray://HOST:10001'
    address: Optional[str] = None
    num_cpus: Optional[int] = None  # CPUs of the local instance (null = all of this machine's); ignored with address
    num_workers: Optional[int] = (
        None  # worker actors, or NoNN/NAIR/mcPipe tasks at a time, one CPU each (null = one per CPU)
    )


@dataclass
class Config:
    """Every setting of a job: the common sections above and the workload's own (`workload.*`)."""

    seed: int = 0
    # continue the interrupted run in the output folder (hydra.run.dir=...); rerunning the same
    # settings into that folder resumes it too (sim/runfolder.py)
    resume: bool = False
    # trained models (a NoNN teacher, NAIR's original model, ...) cached here, keyed by their
    # config, so a sweep does not retrain them; null = no cache
    cache_dir: Optional[str] = ".cache/edgesim"
    # local: in this process, one computation after another | processes: in parallel on worker
    # processes forked from this one | ray: in parallel on Ray
    backend: str = "local"
    ray: RayConfig = field(default_factory=RayConfig)
    # backend=processes: worker processes (null: the cores other processes leave free now, >= 1; the run says)
    processes: Optional[int] = None
    # torch intra-op threads of every computation of a job, in every workload (the federated
    # clients on every back end and the server; NoNN, NAIR, mcPipe): fixed, so that the results
    # do not depend on the back end, the launcher or the cores of the machine (torch splits some
    # float reductions by thread, which changes the last bits; the model cache keys on it); the
    # small models here are also no faster on more threads; null = whatever the process has
    torch_threads: Optional[int] = 1
    # where the real computations run (not a simulated device): cpu | cuda | cuda:N | mps; every
    # workload's clients, trainings, inference, pipeline stages and dreams, and the server's
    # evaluation. The simulated figures (FLOPs, bytes, memory, time, energy) are the same on any;
    # trained weights differ in their last bits (the model cache keys on the device). Not with
    # backend=processes (a forked process cannot use CUDA) nor a user's Flower app (it picks its own)
    torch_device: str = "cpu"
    compare: list[str] = field(default_factory=list)  # strategies run side by side in one job
    # not a setting: each compared strategy's `params`, as Hydra composes its option (the entry point fills it)
    compared: dict[str, Any] = field(default_factory=dict)
    log_level: str = "ERROR"  # Flower's own logging (INFO shows every round)
    progress: bool = True
    # the PNG plots beside the CSVs (false: CSVs only, and matplotlib is never imported: for
    # benchmarks and for sweeps of many short jobs)
    plots: bool = True
    # experiment tracking: none | mlflow | tensorboard (the settings, per-round metrics and the
    # report files, after the job: sim/tracking.py)
    tracking: str = "none"
    # mlflow: the tracking URI (null: MLflow's own default, MLFLOW_TRACKING_URI or ./mlflow.db);
    # tensorboard: the log folder (null: the run's output folder)
    tracking_uri: Optional[str] = None
    # device profiles of your own, usable wherever a profile name is (fleet.mix, workload.device,
    # ...): NAME: {memory_bytes, flops_per_s, compute_w, transmit_w, receive_w, idle_w, source,
    # message_s, nic_bps} as devices.DeviceProfile takes them (bytes, FLOP/s, W, s, bit/s)
    devices: dict[str, Any] = field(default_factory=dict)
    fleet: FleetConfig = field(default_factory=FleetConfig)
    channel: ChannelConfig = field(default_factory=ChannelConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    # the workload's own settings: the schema of the `workload` option chosen (sim/<name>/settings.py)
    workload: Any = None


@dataclass(frozen=True)
class Workload:
    """What the engine needs to know of a workload: registered in `sim.jobs.WORKLOADS`."""

    name: str
    schema: type  # the dataclass of its `workload.*` settings
    uses: frozenset[str]  # top-level sections it reads besides the common ones (fleet, channel, ...)
    validate: Callable[[Config], None]  # its own checks; one-line ConfigError
    run: Callable[..., Any]  # run(cfg, out_dir, *, in_sweep) -> summary rows


def check(ok: bool, setting: str, value: Any, allowed: str) -> None:
    """Raise the one-line `ConfigError` `SETTING=VALUE: allowed` unless `ok`."""
    if not ok:
        raise ConfigError(f"{setting}={value!r}: {allowed}")


def check_workload(ok: bool, setting: str, value: Any, allowed: str) -> None:
    """`check` of the workload's own setting `workload.<setting>`."""
    check(ok, f"workload.{setting}", value, allowed)


def positive(setting: str, value: float) -> None:
    check(
        isinstance(value, (int, float)) and math.isfinite(value) and value > 0,
        setting,
        value,
        "must be a positive number",
    )


# a setting whose values are another program's to read: a user's Flower app's run config (its
# keys and values mean what the app says; Flower's own `flwr run` passes them as they are)
MAX_ATTEMPTS = 1000
MAX_SYNTHETIC = 10_000_000  # 8x8 float32 images: 2.4 GiB
MAX_THREADS = 1024


TORCH_DEVICES = "cpu, cuda, cuda:N (the GPU of index N), mps"


def check_torch_device(cfg: Config) -> None:
    """`torch_device` names a device torch has here, and one the back end can use."""
    text = cfg.torch_device
    m = re.fullmatch(r"(cpu|cuda|mps)(?::(\d+))?", text)
    check(m is not None and (m[2] is None or m[1] == "cuda"), "torch_device", text, f"allowed: {TORCH_DEVICES}")
    kind = m[1]
    if kind == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(
                f"torch_device={text}: no CUDA device is available here (torch.cuda.is_available() is False)"
            )
        count = torch.cuda.device_count()
        if m[2] is not None and int(m[2]) >= count:
            raise ConfigError(
                f"torch_device={text}: this machine has {count} CUDA device(s), cuda:0 .. cuda:{count - 1}"
            )
    elif kind == "mps":
        import torch

        if not torch.backends.mps.is_available():
            raise ConfigError(
                f"torch_device={text}: no MPS device is available here (torch.backends.mps.is_available() is False)"
            )
    if kind != "cpu" and cfg.backend == "processes":
        raise ConfigError(
            f"torch_device={text}: backend=processes forks its workers from the job's process, and a forked "
            f"process cannot use {kind.upper()}; use backend=local or backend=ray"
        )


def validate_common(cfg: Config) -> None:
    """Reject values of the shared sections no run could use; names of registries are checked where they live."""
    check(cfg.tracking in TRACKERS, "tracking", cfg.tracking, f"allowed: {', '.join(TRACKERS)}")
    check(isinstance(cfg.seed, int) and 0 <= cfg.seed < 2**32, "seed", cfg.seed, "allowed range is 0 .. 2**32 - 1")
    check(str(cfg.log_level).upper() in LOG_LEVELS, "log_level", cfg.log_level, f"allowed: {', '.join(LOG_LEVELS)}")
    c = cfg.channel
    check(isinstance(c.ber, (int, float)) and 0.0 <= c.ber <= 0.5, "channel.ber", c.ber, "allowed range is [0, 0.5]")
    positive("channel.bandwidth_bps", c.bandwidth_bps)
    check(c.latency_s >= 0, "channel.latency_s", c.latency_s, "must be >= 0")
    check(c.mode in ("arq", "raw"), "channel.mode", c.mode, "allowed: arq, raw")
    check(
        c.model in ("independent", "gilbert_elliott"), "channel.model", c.model, "allowed: gilbert_elliott, independent"
    )
    check(c.packet_bytes >= 1, "channel.packet_bytes", c.packet_bytes, "must be >= 1")
    check(c.header_bytes >= 0, "channel.header_bytes", c.header_bytes, "must be >= 0")
    check(
        1 <= c.max_attempts <= MAX_ATTEMPTS,
        "channel.max_attempts",
        c.max_attempts,
        f"allowed range is 1..{MAX_ATTEMPTS} (attempts per packet before ARQ gives up; Wi-Fi makes 7)",
    )
    check(0.0 <= c.bad_ber <= 0.5, "channel.bad_ber", c.bad_ber, "allowed range is [0, 0.5]")
    positive("channel.burst_bits", c.burst_bits)
    d = cfg.dataset
    from experiments.common.data import DATASET_NAMES  # torch: imported when a job is checked, not for --help
    from experiments.federated.partition import PARTITION_SCHEMES

    check(d.name in DATASET_NAMES, "dataset.name", d.name, f"allowed: {', '.join(DATASET_NAMES)}")
    check(
        d.partition in PARTITION_SCHEMES, "dataset.partition", d.partition, f"allowed: {', '.join(PARTITION_SCHEMES)}"
    )
    check(d.path is None or d.path.strip() != "", "dataset.path", d.path, "give a folder, or null")
    check(
        d.num_samples is None or 2 <= d.num_samples <= MAX_SYNTHETIC,
        "dataset.num_samples",
        d.num_samples,
        f"allowed range is 2..{MAX_SYNTHETIC:,} (synthetic samples, generated in memory), or null",
    )
    positive("dataset.alpha", d.alpha)
    check(d.shards_per_client >= 1, "dataset.shards_per_client", d.shards_per_client, "must be >= 1")
    check(
        d.samples_per_device is None or (isinstance(d.samples_per_device, int) and d.samples_per_device >= 1),
        "dataset.samples_per_device",
        d.samples_per_device,
        "must be an integer >= 1, or null",
    )
    check(cfg.backend in BACKENDS, "backend", cfg.backend, f"allowed: {', '.join(BACKENDS)}")
    check(
        cfg.processes is None or (isinstance(cfg.processes, int) and 1 <= cfg.processes <= MAX_THREADS),
        "processes",
        cfg.processes,
        f"allowed range is 1..{MAX_THREADS}, or null",
    )
    r = cfg.ray
    for name in ("num_cpus", "num_workers"):
        v = getattr(r, name)
        check(v is None or (isinstance(v, int) and v >= 1), f"ray.{name}", v, "must be an integer >= 1, or null")
    check(
        r.address is None or (isinstance(r.address, str) and r.address.strip() != ""),
        "ray.address",
        r.address,
        "give 'auto', 'HOST:PORT' or 'ray://HOST:PORT', or null to start a local Ray",
    )
    check(
        cfg.torch_threads is None or (isinstance(cfg.torch_threads, int) and 1 <= cfg.torch_threads <= MAX_THREADS),
        "torch_threads",
        cfg.torch_threads,
        f"allowed range is 1..{MAX_THREADS}, or null",
    )
    for name in ("cache_dir", "tracking_uri"):
        v = getattr(cfg, name)
        check(v is None or v.strip() != "", name, v, "give a path, or null")
    check(
        cfg.backend != "processes" or cfg.torch_threads == 1,
        "torch_threads",
        cfg.torch_threads,
        "backend=processes needs 1 (a forked worker hangs in OpenMP threads once the job's process has "
        "used its own); use backend=ray or backend=local for more",
    )
    check_torch_device(cfg)

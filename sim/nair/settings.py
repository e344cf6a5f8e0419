"""Settings of the NAIR workload (`workload=nair`): the schema of `workload.*` and its validation."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

from devices import CATALOGUE
from sim.config import Config, check_workload

__all__ = ["NairSettings", "validate"]


@dataclass
class NairSettings:
    """NAIR's head/tail split, its slicing and quantisation, and the budgets compared (`workload.*`)."""

    name: str = "nair"
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
    # sample: one width per minibatch, drawn with probability alpha_j / J, the chance that width j gets
    # through (the paper's eqs. 3-4; CLIO's code) | sum: every width each minibatch, weights alpha_j
    clio_training: str = "sample"
    clio_head_emphasis: float = 0.0  # alpha_j ~ (J-j+1)^this; 0 = equal (CLIO^n), > 0 favours narrow prefixes (CLIO^l)
    # figure 5: accuracy when what is sent at each split suffers errors at these rates. ber: the link's
    # bit error rate (the payload in this job's encoding through channel.*, raw delivery) | erase: that
    # fraction of the elements arrives as 0 | noise: as a uniform value in the tensor's range
    corruption_rates: list[float] = field(default_factory=lambda: [0.0001, 0.001, 0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5])
    corruption_mode: str = "ber"
    # data subsets (null = all): tiny runs and tests
    train_samples: Optional[int] = None
    test_samples: Optional[int] = None


def validate(cfg: Config) -> None:
    """One-line ConfigError for a setting no run can use (before anything is built)."""
    from experiments.nair.analysis import CORRUPTION_MODES
    from experiments.nair.model import NUM_STAGES
    from experiments.nair.slicing import FLOAT_BITS

    n: NairSettings = cfg.workload
    check_workload(
        isinstance(n.split, int) and 1 <= n.split <= NUM_STAGES,
        "split",
        n.split,
        f"allowed 1..{NUM_STAGES} (after the stem, a bottleneck block or the last convolution)",
    )
    check_workload(
        isinstance(n.input_size, int) and 8 <= n.input_size <= 256, "input_size", n.input_size, "allowed 8..256"
    )
    check_workload(
        isinstance(n.channels_per_unit, int) and n.channels_per_unit >= 1,
        "channels_per_unit",
        n.channels_per_unit,
        "must be an integer >= 1",
    )
    check_workload(
        n.bits_per_element == FLOAT_BITS or 1 <= n.bits_per_element <= 16,
        "bits_per_element",
        n.bits_per_element,
        "allowed 1..16 (quantised) or 32 (float32)",
    )
    lat = list(n.latencies_s)
    check_workload(
        bool(lat)
        and all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in lat)
        and len(set(lat)) == len(lat),
        "latencies_s",
        lat,
        "give distinct positive latency budgets in seconds",
    )
    for name in ("device", "server"):
        check_workload(
            getattr(n, name) in CATALOGUE, name, getattr(n, name), f"allowed: {', '.join(sorted(CATALOGUE))}"
        )
    for name in ("epochs", "batch_size", "retune_epochs", "retune_batch_size"):
        v = getattr(n, name)
        check_workload(isinstance(v, int) and v >= 1, name, v, "must be an integer >= 1")
    for name in ("lr", "retune_lr"):
        v = getattr(n, name)
        check_workload(isinstance(v, (int, float)) and math.isfinite(v) and v > 0, name, v, "must be a positive number")
    for name in ("weight_decay", "w_non", "penalty_weight", "clio_head_emphasis"):
        v = getattr(n, name)
        check_workload(isinstance(v, (int, float)) and math.isfinite(v) and v >= 0, name, v, "must be a number >= 0")
    check_workload(n.clio_training in ("sample", "sum"), "clio_training", n.clio_training, "allowed: sample, sum")
    check_workload(
        n.corruption_mode in CORRUPTION_MODES,
        "corruption_mode",
        n.corruption_mode,
        f"allowed: {', '.join(CORRUPTION_MODES)}",
    )
    top = 0.5 if n.corruption_mode == "ber" else 1.0  # a bit error rate above 1/2 is a flipped channel
    rates = list(n.corruption_rates)
    check_workload(
        bool(rates) and all(isinstance(r, (int, float)) and 0 < r <= top for r in rates),
        "corruption_rates",
        rates,
        f"give rates in (0, {top:g}] (corruption_mode={n.corruption_mode})",
    )
    for name in ("train_samples", "test_samples"):
        v = getattr(n, name)
        check_workload(v is None or (isinstance(v, int) and v >= 10), name, v, "null (all) or an integer >= 10")

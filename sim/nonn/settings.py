"""Settings of the NoNN workload (`workload=nonn`): the schema of `workload.*` and its validation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from devices import CATALOGUE
from sim.config import Config, check_workload
from sim.dream.settings import DreamGeneration, check_wrn_depth, check_wrn_width, validate_generation

__all__ = ["NonnSettings", "validate"]


@dataclass
class NonnSettings:
    """NoNN's teacher, its partitioning into students and their training (`workload.*`)."""

    name: str = "nonn"
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
    resolution: float = 0.7  # the paper's gamma (eq. 5: the null model weighed by 1/gamma); networkx gets 1/gamma
    # P0 is the largest group whose removal changes the teacher's validation accuracy by less than
    # this (the paper's epsilon, which it does not state; 0.01: one point of validation accuracy)
    p0_epsilon: float = 0.01
    balance: bool = True  # cut communities larger than 1/k of the kept filters so partitions come out near-equal
    # what the students learn from: real (the teacher's training set) | dream (Dream Distillation:
    # images made from the teacher's metadata, as `workload.dream.*` says; docs/dream.md)
    data: str = "real"
    dream: DreamGeneration = field(default_factory=DreamGeneration)
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


def validate(cfg: Config) -> None:
    """Refuse, with a one-line `ConfigError`, `workload.*` values no NoNN job could use."""
    from experiments.nonn.partition import RULES

    n: NonnSettings = cfg.workload
    check_workload(
        isinstance(n.num_students, int) and 1 <= n.num_students <= 16,
        "num_students",
        n.num_students,
        "allowed range is 1..16",
    )
    for name in ("teacher_depth", "student_depth"):
        check_wrn_depth(name, getattr(n, name))
    check_wrn_width("teacher_width", n.teacher_width)
    check_wrn_width("student_width", n.student_width, ", or null (the widest that meets both budgets)")
    for name in ("teacher_epochs", "student_epochs", "batch_size", "timing_images"):
        v = getattr(n, name)
        check_workload(isinstance(v, int) and v >= 1, name, v, "must be an integer >= 1")
    check_workload(0 < n.val_fraction < 1, "val_fraction", n.val_fraction, "allowed range is (0, 1)")
    check_workload(n.data in ("real", "dream"), "data", n.data, "allowed: real, dream")
    validate_generation(n.dream, "dream.")
    check_workload(n.rule in RULES, "rule", n.rule, f"allowed: {', '.join(RULES)}")
    check_workload(n.top_filters is None or n.top_filters >= 2, "top_filters", n.top_filters, "must be >= 2 or null")
    check_workload(0 <= n.edge_percentile < 100, "edge_percentile", n.edge_percentile, "allowed range is [0, 100)")
    check_workload(n.resolution > 0, "resolution", n.resolution, "must be > 0")
    check_workload(0 < n.p0_epsilon <= 1, "p0_epsilon", n.p0_epsilon, "allowed range is (0, 1]")
    check_workload(n.memory_budget_bytes > 0, "memory_budget_bytes", n.memory_budget_bytes, "must be > 0")
    check_workload(n.bytes_per_param > 0, "bytes_per_param", n.bytes_per_param, "must be > 0 (1 = 8-bit, 4 = float32)")
    check_workload(n.flop_budget > 0, "flop_budget", n.flop_budget, "must be > 0")
    for name in ("lr", "temperature", "deadline_s"):
        check_workload(getattr(n, name) > 0, name, getattr(n, name), "must be > 0")
    check_workload(0 <= n.alpha <= 1, "alpha", n.alpha, "allowed range is [0, 1]")
    for name in ("beta", "at_beta", "momentum", "weight_decay"):
        check_workload(getattr(n, name) >= 0, name, getattr(n, name), "must be >= 0")
    for name in ("beta_search", "at_beta_search"):
        v = list(getattr(n, name))
        check_workload(all(b >= 0 for b in v), name, v, "weights must be >= 0 ([] = use beta / at_beta)")
    check_workload(n.kd_scale is None or n.kd_scale >= 0, "kd_scale", n.kd_scale, "must be >= 0 or null (2 T^2)")
    for name in ("device", "big_device", "server"):
        check_workload(
            getattr(n, name) in CATALOGUE, name, getattr(n, name), f"allowed: {', '.join(sorted(CATALOGUE))}"
        )
    check_workload(n.split_model in ("atkd", "teacher"), "split_model", n.split_model, "allowed: atkd, teacher")
    check_workload(
        n.split_model == "teacher" or n.baselines,
        "split_model",
        n.split_model,
        "'atkd' needs workload.baselines=true (the ATKD student is the model that is split); or use 'teacher'",
    )

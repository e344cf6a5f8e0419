"""Settings of the Dream Distillation workload (`workload=dream`): the schema of `workload.*`
and its validation. The teacher's settings are NoNN's, with NoNN's defaults, so that both
workloads share one cached teacher."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from devices import CATALOGUE
from sim.config import Config, check_workload

__all__ = ["DreamGeneration", "DreamSettings", "check_wrn_depth", "check_wrn_width", "validate", "validate_generation"]

SOURCES = ("random", "dream", "alternate", "real")
MAX_IMAGES = 100_000
MAX_WRN_DEPTH = 100  # WRN-100-16 has ~370 M parameters
MAX_WRN_WIDTH = 16.0


@dataclass
class DreamGeneration:
    """How dreams are made: the owner's metadata and the optimisation of images to match it.
    The dream workload's own settings (`workload.*`) and NoNN's `workload.dream.*`."""

    # the metadata the data owner sends: per class, k-means of the average-pool activations
    sample_fraction: float = 0.1  # of the training images the owner summarises
    clusters: int = 4  # k per class
    components: int = 3  # principal directions per cluster
    # dream generation
    images: Optional[int] = None  # N, and the size of every source; null = the training set's size
    noise: float = 1.0  # the targets' Gaussian noise along each direction, in its standard deviations
    steps: int = 60  # Adam steps per image
    dream_lr: float = 0.1
    tv_weight: float = 0.01  # image priors (docs/dream.md): total variation, L2, random shift
    l2_weight: float = 0.001
    jitter: int = 0  # a 1-pixel shift of an 8x8 image: the activations then miss their targets 15x more


@dataclass
class DreamSettings(DreamGeneration):
    """Dream Distillation's teacher, its synthetic images and the student trained on them (`workload.*`)."""

    name: str = "dream"
    # the teacher: NoNN's (WRN-16-4 on the training set less the validation split), from the cache
    teacher_depth: int = 16
    teacher_width: float = 4.0
    teacher_epochs: int = 15
    val_fraction: float = 0.1
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5.0e-4
    # distillation: WRN students of these widths (NoNN-student size, mid, the teacher's)
    student_depth: int = 16
    student_widths: list[float] = field(default_factory=lambda: [0.5, 1.0, 4.0])
    student_epochs: int = 15
    temperature: float = 4.0
    sources: list[str] = field(default_factory=lambda: list(SOURCES))
    # on the network: the data owner sends the metadata to the server that compresses
    owner: str = "rpi3_400mhz"
    server: str = "edge_server"


def validate_generation(g: DreamGeneration, prefix: str = "") -> None:
    """One-line `ConfigError` naming `workload.<prefix>X` for a generation setting no run could use."""
    for name in ("clusters", "components", "steps"):
        v = getattr(g, name)
        check_workload(isinstance(v, int) and v >= 1, prefix + name, v, "must be an integer >= 1")
    # the metadata is a (classes x clusters x components x features) array, made before a class's
    # images cap the clusters it fills: bounded here, so that it cannot exhaust memory
    check_workload(
        g.clusters <= 100, prefix + "clusters", g.clusters, "allowed range is 1..100 (k-means clusters per class)"
    )
    check_workload(
        g.components <= 64,
        prefix + "components",
        g.components,
        "allowed range is 1..64 (principal directions per cluster)",
    )
    check_workload(
        g.images is None or g.images <= MAX_IMAGES,
        prefix + "images",
        g.images,
        f"at most {MAX_IMAGES:,} (dreams are held in memory; CIFAR-10's training set is 50,000), or null",
    )
    check_workload(isinstance(g.jitter, int) and g.jitter >= 0, prefix + "jitter", g.jitter, "must be an integer >= 0")
    check_workload(
        g.images is None or (isinstance(g.images, int) and g.images >= 1),
        prefix + "images",
        g.images,
        "an integer >= 1 or null",
    )
    check_workload(0 < g.sample_fraction < 1, prefix + "sample_fraction", g.sample_fraction, "allowed range is (0, 1)")
    check_workload(g.dream_lr > 0, prefix + "dream_lr", g.dream_lr, "must be > 0")
    for name in ("noise", "tv_weight", "l2_weight"):
        check_workload(getattr(g, name) >= 0, prefix + name, getattr(g, name), "must be >= 0")


def check_wrn_depth(name: str, v: int) -> None:
    check_workload(
        isinstance(v, int) and 10 <= v <= MAX_WRN_DEPTH and (v - 4) % 6 == 0,
        name,
        v,
        f"a WRN depth 6n + 4 up to {MAX_WRN_DEPTH} (10, 16, 22, 28, 40, ...)",
    )


def check_wrn_width(name: str, v: float | None, null: str = "") -> None:
    check_workload(
        (null != "" and v is None) or (v is not None and 0 < v <= MAX_WRN_WIDTH),
        name,
        v,
        f"a WRN width multiplier in (0, {MAX_WRN_WIDTH:g}]{null}",
    )


def validate(cfg: Config) -> None:
    """One-line `ConfigError` naming `workload.X` for a value no run could use."""
    d: DreamSettings = cfg.workload
    for name in ("teacher_depth", "student_depth"):
        check_wrn_depth(name, getattr(d, name))
    validate_generation(d)
    for name in ("teacher_epochs", "batch_size", "student_epochs"):
        v = getattr(d, name)
        check_workload(isinstance(v, int) and v >= 1, name, v, "must be an integer >= 1")
    check_workload(0 < d.val_fraction < 1, "val_fraction", d.val_fraction, "allowed range is (0, 1)")
    for name in ("lr", "temperature"):
        check_workload(getattr(d, name) > 0, name, getattr(d, name), "must be > 0")
    check_wrn_width("teacher_width", d.teacher_width)
    for name in ("momentum", "weight_decay"):
        check_workload(getattr(d, name) >= 0, name, getattr(d, name), "must be >= 0")
    widths = list(d.student_widths)
    check_workload(
        bool(widths) and all(0 < w <= MAX_WRN_WIDTH for w in widths),
        "student_widths",
        widths,
        f"WRN width multipliers in (0, {MAX_WRN_WIDTH:g}], at least one",
    )
    sources = list(d.sources)
    check_workload(
        bool(sources) and set(sources) <= set(SOURCES) and len(set(sources)) == len(sources),
        "sources",
        sources,
        f"distinct names among {', '.join(SOURCES)}",
    )
    for name in ("owner", "server"):
        check_workload(
            getattr(d, name) in CATALOGUE, name, getattr(d, name), f"allowed: {', '.join(sorted(CATALOGUE))}"
        )

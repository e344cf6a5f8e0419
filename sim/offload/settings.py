"""Settings of the offload example (`workload=offload`): the schema of `workload.*` and its validation."""

from __future__ import annotations

from dataclasses import dataclass

from devices import CATALOGUE
from sim.config import Config, check_workload, positive

__all__ = ["OffloadSettings", "validate"]


@dataclass
class OffloadSettings:
    """The sensor that classifies its images itself or sends them to a server (`workload.*`)."""

    name: str = "offload"
    device: str = "cortex_m7_512kb"  # the sensor: classifies an image itself, or sends it
    server: str = "edge_server"  # classifies the images it receives and sends the label back
    images: int = 100  # test images the sensor captures, per mode (at most the 360 of the test set)
    period_s: float = 0.1  # one image every period_s; a busy radio makes the next one wait
    hidden: int = 64  # the MLP's hidden units
    epochs: int = 20
    lr: float = 0.05
    batch_size: int = 32


def validate(cfg: Config) -> None:
    """One-line `ConfigError` naming `workload.X` for a value no run could use."""
    s: OffloadSettings = cfg.workload
    for name in ("device", "server"):
        value = getattr(s, name)
        check_workload(value in CATALOGUE, name, value, f"allowed: {', '.join(sorted(CATALOGUE))}")
    for name in ("images", "hidden", "epochs", "batch_size"):
        value = getattr(s, name)
        check_workload(isinstance(value, int) and value >= 1, name, value, "must be an integer >= 1")
    check_workload(s.hidden <= 65536, "hidden", s.hidden, "allowed range is 1..65536 (the MLP's hidden units)")
    positive("workload.period_s", s.period_s)
    positive("workload.lr", s.lr)

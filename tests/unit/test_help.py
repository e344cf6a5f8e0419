"""`--help` lists every setting of the schemas with its default and its comment."""

from __future__ import annotations

import dataclasses

import pytest

from sim.help import help_text
from sim.jobs import WORKLOADS


def _names(cls, prefix):
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            yield from _names(type(default), f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}"


@pytest.mark.parametrize("workload", sorted(WORKLOADS))
def test_every_workload_setting_is_listed(workload: str) -> None:
    text = help_text([f"workload={workload}"])
    listed = {line.split("=", 1)[0].strip() for line in text.splitlines() if line.startswith("  ")}
    assert set(_names(WORKLOADS[workload].schema, "workload.")) <= listed


def test_defaults_and_meanings_come_from_the_schema() -> None:
    text = help_text([])
    assert "  workload.rounds=30" in text.splitlines()
    assert any(ln.startswith("  channel.ber=0.0    # mean bit error rate") for ln in text.splitlines())
    assert "  dataset=mnist5k    # 5,000 real MNIST images" in text
    assert "  experiment=nonn_dream" in text
    nonn = help_text(["workload=nonn"])
    assert "  workload.dream.steps=60    # Adam steps per image" in nonn.splitlines()
    assert "fleet.num_devices" not in nonn  # NoNN reads no fleet section

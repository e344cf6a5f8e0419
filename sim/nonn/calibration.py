"""The paper's own deployments, simulated with the catalogue device profiles, beside the figures
the paper measured (calibration.csv): NoNN tables 6 and 7, the teacher on one device, the split
ATKD student of table 8 (on the Pi's TVM-calibrated profile and on its PyTorch one, the way the
paper measured it), and figure 7's heterogeneous deployments (one Odroid runs 1..8 of the 8
students, Pis the rest). Each deployment is a system of its own (`sim.nonn.system`), its devices
all on the job's link, over the job's medium.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from channels import Link
from devices import CATALOGUE, DeviceProfile
from experiments.nonn.inference import FLOAT_BYTES, InferencePlan
from experiments.nonn.models import WRN, scaled_widths
from experiments.nonn.split import split_work
from sim.nonn.fleet import fleet_scenarios
from sim.nonn.system import Systems, link_systems
from sim.nonn.timeline import DeviceLoad, InferenceOutcome, simulate_inference, simulate_split
from sim.seeding import stream

__all__ = ["PAPER_TABLE7", "calibration"]

# NoNN paper, tables 6 and 7 (CIFAR-10, 167 MFLOP students, 2.6 GFLOP teacher, wired network):
# (device, students) -> (computation ms, communication ms); teacher on one device: latency ms.
PAPER_TABLE7 = {
    ("rpi3_400mhz", 2): (101.91, 13.10),
    ("rpi3_400mhz", 8): (106.24, 43.76),
    ("odroid_xu4", 2): (19.01, 6.00),
    ("odroid_xu4", 8): (20.60, 15.40),
}
PAPER_TABLE6_ENERGY_MJ = {
    ("rpi3_400mhz", 2): 238.98,
    ("rpi3_400mhz", 8): 249.15,
    ("odroid_xu4", 2): 219.07,
    ("odroid_xu4", 8): 237.45,
}
PAPER_TEACHER_MS = {"rpi3_400mhz": 1405.0, "odroid_xu4": 224.0}
PAPER_TABLE8_SPLIT_S = {4: 23.0, 8: 28.5}  # split-ATKD (WRN40-2) total latency per inference, PyTorch on the Pis
PAPER_STUDENT_FLOPS, PAPER_TEACHER_FLOPS = 167e6, 2.6e9
PAPER_IMAGE_BYTES = 3 * 32 * 32 * FLOAT_BYTES  # a CIFAR-10 image as float32
PAPER_PARTITION_FILTERS = 80  # 34 + 46 filters kept out of 256 (figure 6a)


def _row(
    deployment: str,
    device: str,
    out: InferenceOutcome,
    compute_s: float,
    *,
    paper_compute_ms: float = math.nan,
    paper_communication_ms: float = math.nan,
    paper_latency_ms: float = math.nan,
    paper_energy_per_node_mj: float = math.nan,
) -> dict:
    """One deployment: simulated compute, communication, latency and energy (per device, and of
    all its devices) beside the paper's."""
    energy_j = [t.energy_j for t in out.devices]
    return {
        "deployment": deployment,
        "device": device,
        "devices": len(energy_j),
        "sim_compute_ms": 1e3 * compute_s,
        "paper_compute_ms": paper_compute_ms,
        "sim_communication_ms": 1e3 * (out.latency_s - compute_s),
        "paper_communication_ms": paper_communication_ms,
        "sim_latency_ms": 1e3 * out.latency_s,
        "paper_latency_ms": paper_latency_ms,
        "sim_energy_per_node_mj": 1e3 * float(np.mean(energy_j)),
        "paper_energy_per_node_mj": paper_energy_per_node_mj,
        "sim_energy_total_mj": 1e3 * float(np.sum(energy_j)),
    }


def _paper_plan(k: int) -> InferencePlan:
    """NoNN-kS with the paper's FLOPs (167 M per student) and pooled features (80 kept filters
    shared among the students, float32)."""
    sizes = [PAPER_PARTITION_FILTERS // k + (i < PAPER_PARTITION_FILTERS % k) for i in range(k)]
    return InferencePlan(
        0,
        (int(PAPER_STUDENT_FLOPS),) * k,
        PAPER_IMAGE_BYTES,
        tuple(s * FLOAT_BYTES for s in sizes),
        2 * PAPER_PARTITION_FILTERS * 10,
    )


def _nonn_rows(systems: Systems, seed: int) -> list[dict]:
    """Tables 6 and 7: NoNN-2S and NoNN-8S on each device kind."""
    rows = []
    for (name, k), (comp_ms, comm_ms) in PAPER_TABLE7.items():
        p = CATALOGUE[name]
        out = simulate_inference(
            _paper_plan(k),
            [DeviceLoad(p, (i,)) for i in range(k)],
            systems([p] * k),
            stream(seed, "calibration", name, k),
        )
        rows.append(
            _row(
                f"NoNN-{k}S",
                name,
                out,
                max(t.compute_s for t in out.devices),
                paper_compute_ms=comp_ms,
                paper_communication_ms=comm_ms,
                paper_latency_ms=comp_ms + comm_ms,
                paper_energy_per_node_mj=PAPER_TABLE6_ENERGY_MJ[(name, k)],
            )
        )
    return rows


def _teacher_rows(systems: Systems, seed: int) -> list[dict]:
    """The teacher (2.6 GFLOP) alone on one device of each kind."""
    rows = []
    for name, ms in PAPER_TEACHER_MS.items():
        p = CATALOGUE[name]
        plan = InferencePlan(0, (int(PAPER_TEACHER_FLOPS),), PAPER_IMAGE_BYTES, (10 * FLOAT_BYTES,), 0)
        out = simulate_inference(plan, [DeviceLoad(p, (0,))], systems([p]), stream(seed, "calibration", name, 0))
        rows.append(_row("teacher (one device)", name, out, out.devices[0].compute_s, paper_latency_ms=ms))
    return rows


def _heterogeneous_rows(systems: Systems, seed: int) -> list[dict]:
    """Figure 7: NoNN-8S with one Odroid running j = 1..8 students (one after another) and a Pi
    each of the others. The paper gives the shape, not the numbers: latency lowest at j = 4,
    energy of all the devices lowest at j = 1, equal to 8 Pis' at j = 2, 25% above it at j = 8."""
    pi, odroid = CATALOGUE["rpi3_400mhz"], CATALOGUE["odroid_xu4"]
    rows = []
    for j, (_, loads) in enumerate(fleet_scenarios(8, pi, odroid)[2:], start=1):
        profiles = [load.profile for load in loads]
        out = simulate_inference(_paper_plan(8), loads, systems(profiles), stream(seed, "calibration", "figure 7", j))
        compute_s = max(t.compute_s for t in out.devices)
        rows.append(_row(f"NoNN-8S, Odroid runs {j}", f"{odroid.name} + {pi.name}", out, compute_s))
    return rows


def _split_rows(systems: Systems, seed: int) -> list[dict]:
    """Table 8: the ATKD student WRN40-2 split over 4 and 8 Raspberry Pis, on a CIFAR-size
    input. The paper measured it with PyTorch 0.4.1 on the Pis: simulated on the Pi's TVM
    profile (the rate every other row uses) and on its PyTorch one."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        wrn40_2 = WRN(40, scaled_widths(2), 3, 10)
        image = torch.randn(1, 3, 32, 32)
    rows = []
    for name in ("rpi3_400mhz", "rpi3_400mhz_pytorch"):
        p = CATALOGUE[name]
        for k, seconds in PAPER_TABLE8_SPLIT_S.items():
            layers, pooled = split_work(wrn40_2, image, k)
            rng = stream(seed, "calibration", "split", name, k)
            out = simulate_split(layers, pooled, PAPER_IMAGE_BYTES, 2 * 128 * 10, systems([p] * k), rng)
            compute_s = max(t.compute_s for t in out.devices)
            rows.append(_row(f"split ATKD WRN40-2 over {k}", p.name, out, compute_s, paper_latency_ms=1e3 * seconds))
    return rows


def calibration(link: Link, server: DeviceProfile, seed: int, medium: str = "dedicated") -> pd.DataFrame:
    """The paper's deployments simulated over `link` (and `medium`) with `server` as the
    aggregator, beside the paper's measured figures, and the latency's error against them (%)."""
    systems = link_systems(link, server, medium)
    rows = _nonn_rows(systems, seed) + _teacher_rows(systems, seed) + _split_rows(systems, seed)
    df = pd.DataFrame(rows + _heterogeneous_rows(systems, seed))
    df["latency_error_pct"] = 100 * (df["sim_latency_ms"] / df["paper_latency_ms"] - 1)
    return df

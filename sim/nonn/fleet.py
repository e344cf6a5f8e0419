"""The simulated deployments of a trained NoNN (inference.csv, inference_devices.csv,
robustness.csv): the NoNN on each fleet scenario, the teacher on one small device, the
horizontally split baseline on each device kind, and the NoNN with every subset of its devices
failed.

Each scenario is one system on the network (`sim.nonn.system`: its devices and the aggregator
on one clock, over one medium) on which its inferences (`sim.nonn.timeline`, the plan measured
on the real models) run one after another; its device states are the scenario's rows of
timeline.csv. On the first scenario every test image is simulated and what the link delivered
(bit flips in raw mode, missing students) goes through the real aggregator: the delivered
accuracy.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from channels import flip_bits
from devices import CATALOGUE, DeviceProfile
from experiments.common.data import Dataset
from experiments.common.metrics import count_params
from experiments.nonn.inference import (
    InferencePlan,
    features_accuracy,
    inference_plan,
    pooled_features,
    single_model_plan,
    student_features,
)
from experiments.nonn.models import NoNN
from experiments.nonn.pipeline import TrainedModels
from experiments.nonn.split import split_plan
from sim.nonn.settings import NonnSettings
from sim.nonn.system import System, Systems
from sim.nonn.timeline import DeviceLoad, InferenceOutcome, simulate_inference, simulate_split
from sim.seeding import stream

__all__ = ["Fleet", "FleetResult", "fleet_scenarios", "simulate_fleet", "TIMELINE_KEYS"]

MEANS = ("compute_s", "download_s", "upload_s", "receive_s", "energy_j", "retransmissions")
TIMELINE_KEYS = ["scenario", "method"]  # timeline.csv's leading columns: which system a row is of


@dataclass
class Fleet:
    """What every simulated deployment of a job shares."""

    n: NonnSettings
    seed: int
    systems: Systems  # a deployment's device profiles -> its system on the network
    small: DeviceProfile  # one student per device (`workload.device`)
    big: DeviceProfile  # takes 1..k students in the heterogeneous scenarios (`workload.big_device`)
    timelines: list = field(default_factory=list)  # (scenario, method, system), as simulated

    def system(self, scenario: str, method: str, profiles: Sequence[DeviceProfile]) -> System:
        """A new system for one scenario; its timeline goes into timeline.csv."""
        system = self.systems(profiles)
        self.timelines.append((scenario, method, system))
        return system

    def timeline(self) -> list[dict]:
        """timeline.csv: every system's device states, led by its scenario and method."""
        return [
            {"scenario": scenario, "method": method, **row}
            for scenario, method, system in self.timelines
            for row in system.net.timeline.sorted()
        ]


@dataclass
class FleetResult:
    """The fleet's tables, and the delivered accuracy and flipped bits over the test set."""

    scenarios: pd.DataFrame
    devices: pd.DataFrame
    robustness: pd.DataFrame
    delivered_accuracy: float
    bits_flipped: int
    timeline: list[dict]  # timeline.csv rows: TIMELINE_KEYS + sim.net.TIMELINE_COLUMNS


def fleet_scenarios(k: int, small: DeviceProfile, big: DeviceProfile) -> list[tuple[str, list[DeviceLoad]]]:
    """The NoNN deployments: k small devices, k big ones, and (the paper's figure 7) the big
    device running j students with small devices one each."""
    out = [
        (f"homogeneous {small.name}", [DeviceLoad(small, (i,)) for i in range(k)]),
        (f"homogeneous {big.name}", [DeviceLoad(big, (i,)) for i in range(k)]),
    ]
    for j in range(1, k + 1):
        out.append(
            (
                f"{big.name} runs {j}",
                [DeviceLoad(big, tuple(range(j)))] + [DeviceLoad(small, (i,)) for i in range(j, k)],
            )
        )
    return out


def _device_rows(
    scenario: str,
    method: str,
    out: InferenceOutcome,
    params: list[int],
    bytes_per_param: float,
    profiles: Sequence[DeviceProfile],
) -> list[dict]:
    """inference_devices.csv rows of one simulated inference; `params`: each device's parameters."""
    return [
        {
            "scenario": scenario,
            "method": method,
            "device": t.device,
            "profile": t.profile,
            "students": " ".join(map(str, t.students)),
            "params": p,
            "memory_bytes": int(math.ceil(p * bytes_per_param)),
            "device_memory_bytes": prof.memory_bytes,
            "compute_flops": t.compute_flops,
            "compute_s": t.compute_s,
            "download_s": t.download_s,
            "upload_s": t.upload_s,
            "receive_s": t.receive_s,
            "retransmissions": t.retransmissions,
            "energy_j": t.energy_j,
        }
        for t, p, prof in zip(out.devices, params, profiles)
    ]


def _mean_rows(rows: list[list[dict]]) -> list[dict]:
    """Per device, the mean over the simulated inferences of the numeric columns."""
    out = []
    for per_device in zip(*rows):
        r = dict(per_device[0])
        for key in MEANS:
            r[key] = float(np.mean([x[key] for x in per_device]))
        out.append(r)
    return out


def _scenario_row(
    name: str,
    method: str,
    devices: int,
    students: int,
    outs: list[InferenceOutcome],
    dev: list[dict],
    bytes_per_inference: int,
    delivered_accuracy: float = math.nan,
) -> dict:
    """inference.csv row: latency over the simulated inferences, the slowest device's compute,
    the rest as communication and waiting, energy per node and in all, bytes on the air."""
    lat = np.array([o.latency_s for o in outs])
    compute = max(d["compute_s"] for d in dev)
    return {
        "scenario": name,
        "method": method,
        "devices": devices,
        "students": students,
        "latency_s": float(lat.mean()),
        "latency_max_s": float(lat.max()),
        "compute_s": compute,
        "communication_s": float(lat.mean()) - compute,
        "energy_per_node_j": float(np.mean([d["energy_j"] for d in dev])),
        "energy_total_j": float(sum(d["energy_j"] for d in dev)),
        "bytes_per_inference": bytes_per_inference,
        "delivered_accuracy": delivered_accuracy,
    }


def _delivered(
    nonn: NoNN, loads: list[DeviceLoad], outs: list[InferenceOutcome], data: Dataset, pooled: list[np.ndarray]
) -> tuple[float, int]:
    """(test accuracy on what the link delivered, bits flipped), one simulated inference per test
    image: a device whose copy of the image was corrupted (raw mode) computes on it, flipped
    bits land in the features sent, and a student that never arrived counts as zeros."""
    received = [np.zeros_like(p) for p in pooled]
    flipped = 0
    for img, out in enumerate(outs):
        flipped += out.bits_flipped
        redo = {}
        for d, flips in out.image_flips.items():
            bad = data.x_test[img : img + 1].numpy().copy()
            flip_bits(bad.view(np.uint8).reshape(-1), flips)
            redo.update(student_features(nonn, bad, loads[d].students))
        for s, flips in out.arrived.items():
            row = redo[s].copy() if s in redo else pooled[s][img].copy()
            if len(flips):
                flip_bits(row.view(np.uint8), flips)
            received[s][img] = row
    return features_accuracy(nonn, received, data.y_test.numpy()), flipped


def _nonn_scenarios(
    fleet: Fleet, tr: TrainedModels, data: Dataset, plan: InferencePlan, pooled: list[np.ndarray]
) -> tuple[list[dict], list[dict], float, int]:
    """(inference.csv rows, inference_devices.csv rows, delivered accuracy, bits flipped) of the
    NoNN on every scenario; the first scenario simulates every test image for the delivered
    accuracy, the others `timing_images`."""
    n, k = fleet.n, len(tr.nonn.sizes)
    common_p, branch_p = count_params(tr.nonn.common), [count_params(b) for b in tr.nonn.branches]
    rows, dev_rows, delivered, flipped = [], [], math.nan, 0
    for si, (name, loads) in enumerate(fleet_scenarios(k, fleet.small, fleet.big)):
        n_images = len(data.y_test) if si == 0 else n.timing_images
        system = fleet.system(name, "NoNN", [load.profile for load in loads])
        outs = [
            simulate_inference(
                plan, loads, system, stream(fleet.seed, "nonn-inference", si, img), deadline_s=n.deadline_s
            )
            for img in range(n_images)
        ]
        if si == 0:
            delivered, flipped = _delivered(tr.nonn, loads, outs, data, pooled)
        params = [common_p + sum(branch_p[s] for s in load.students) for load in loads]
        profiles = [load.profile for load in loads]
        timed = outs[: n.timing_images]
        dev = _mean_rows([_device_rows(name, "NoNN", o, params, n.bytes_per_param, profiles) for o in timed])
        dev_rows += dev
        rows.append(
            _scenario_row(
                name,
                "NoNN",
                len(loads),
                k,
                timed,
                dev,
                plan.image_bytes * len(loads) + sum(plan.feature_bytes),
                delivered if si == 0 else math.nan,
            )
        )
    return rows, dev_rows, delivered, flipped


def _teacher_scenario(fleet: Fleet, tr: TrainedModels, data: Dataset) -> tuple[dict, list[dict]]:
    """The teacher alone on one small device (the paper's table 6 reference)."""
    n, small = fleet.n, fleet.small
    plan = single_model_plan(tr.teacher, data.input_shape, data.num_classes)
    name = f"teacher on one {small.name}"
    system = fleet.system(name, "teacher", [small])
    outs = [
        simulate_inference(plan, [DeviceLoad(small, (0,))], system, stream(fleet.seed, "nonn-teacher-inf", img))
        for img in range(n.timing_images)
    ]
    dev = _mean_rows(
        [_device_rows(name, "teacher", o, [count_params(tr.teacher)], n.bytes_per_param, [small]) for o in outs]
    )
    return _scenario_row(name, "teacher", 1, 0, outs, dev, plan.image_bytes + sum(plan.feature_bytes)), dev


def _split_scenarios(
    fleet: Fleet, tr: TrainedModels, data: Dataset, image_bytes: int, k: int
) -> tuple[list[dict], list[dict]]:
    """The horizontally split baseline (`workload.split_model`) on k devices of each kind."""
    n = fleet.n
    model = tr.atkd if n.split_model == "atkd" else tr.teacher
    method = f"split {n.split_model}"
    plan = split_plan(model, data.x_test[:1], k)
    params = [count_params(model) // k] * k
    rows, dev_rows = [], []
    for prof in (fleet.small, fleet.big):
        name = f"homogeneous {prof.name}"
        system = fleet.system(name, method, [prof] * k)
        outs = [
            simulate_split(
                plan.layers,
                plan.pooled_bytes,
                image_bytes,
                plan.fc_flops,
                system,
                stream(fleet.seed, "nonn-split", prof.name, img),
            )
            for img in range(n.timing_images)
        ]
        dev = _mean_rows([_device_rows(name, method, o, params, n.bytes_per_param, [prof] * k) for o in outs])
        dev_rows += dev
        rows.append(
            _scenario_row(
                name, method, k, 0, outs, dev, image_bytes * k + plan.exchanged_bytes + sum(plan.pooled_bytes)
            )
        )
    return rows, dev_rows


def _robustness(fleet: Fleet, nonn: NoNN, plan: InferencePlan, pooled: list[np.ndarray], y: np.ndarray) -> pd.DataFrame:
    """robustness.csv: per number of active small devices (one student each), the test accuracy
    over every subset of active devices (missing students count as zeros) and the mean latency."""
    k = len(nonn.sizes)
    loads = [DeviceLoad(fleet.small, (i,)) for i in range(k)]
    system = fleet.system(f"homogeneous {fleet.small.name}, devices failed", "NoNN", [fleet.small] * k)
    rows = []
    for active_n in range(1, k + 1):
        accs, lats = [], []
        for active in itertools.combinations(range(k), active_n):
            failed = frozenset(range(k)) - set(active)
            rng = stream(fleet.seed, "nonn-robustness", *active)
            out = simulate_inference(plan, loads, system, rng, failed=failed, deadline_s=fleet.n.deadline_s)
            feats = [pooled[s] if s in out.arrived else np.zeros_like(pooled[s]) for s in range(k)]
            accs.append(features_accuracy(nonn, feats, y))
            lats.append(out.latency_s)
        rows.append(
            {
                "active_devices": active_n,
                "failed_devices": k - active_n,
                "subsets": len(accs),
                "accuracy_min": min(accs),
                "accuracy_mean": float(np.mean(accs)),
                "accuracy_max": max(accs),
                "latency_mean_s": float(np.mean(lats)),
            }
        )
    return pd.DataFrame(rows)


def simulate_fleet(n: NonnSettings, seed: int, tr: TrainedModels, data: Dataset, systems: Systems) -> FleetResult:
    """Every simulated deployment of the trained models `tr`, each on a system of `systems`."""
    fleet = Fleet(n, seed, systems, CATALOGUE[n.device], CATALOGUE[n.big_device])
    plan = inference_plan(tr.nonn, data.input_shape)
    pooled = pooled_features(tr.nonn, data.x_test)
    rows, dev_rows, delivered, flipped = _nonn_scenarios(fleet, tr, data, plan, pooled)
    teacher_row, teacher_dev = _teacher_scenario(fleet, tr, data)
    split_rows, split_dev = _split_scenarios(fleet, tr, data, plan.image_bytes, len(tr.nonn.sizes))
    robustness = _robustness(fleet, tr.nonn, plan, pooled, data.y_test.numpy())
    scenarios = pd.DataFrame(rows + [teacher_row] + split_rows)
    devices = pd.DataFrame(dev_rows + teacher_dev + split_dev)
    return FleetResult(scenarios, devices, robustness, delivered, flipped, fleet.timeline())

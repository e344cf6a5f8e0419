"""The NoNN job: teacher, knowledge partitioning, students and baselines, then distributed
inference of the students (and of the horizontally split baseline) on a simulated fleet, and
the students' robustness to failed devices.

`run(cfg, out_dir)` writes partition.csv, students.csv, comparison.csv, inference.csv,
inference_devices.csv, robustness.csv, calibration.csv, summary.csv and two plots. Training is
real (cached on disk, keyed by the settings that decide the weights); the inference timelines are
SimPy processes whose compute times come from the FLOPs PyTorch counts on the real students and
whose transfers carry the real payload sizes over `cfg.channel`.
"""
from __future__ import annotations

import itertools
import math
import time
from pathlib import Path
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import pandas as pd
import simpy
import torch

from channels import Link, flip_bits, transfer
from devices import CATALOGUE, DeviceProfile
from experiments.common.cache import Training, train_cached
from experiments.common.data import Dataset, load_dataset
from experiments.nonn.budget import StudentCost, forward_flops, match_width, size_students
from experiments.nonn.models import WRN, NoNN, count_params, scaled_widths
from experiments.nonn.partition import RULES, KnowledgePartition, partition_filters
from experiments.nonn.split import split_work
from experiments.nonn.train import (DistillSettings, TrainSettings, accuracy, teacher_targets, train_nonn,
                                    train_single, train_teacher)
from sim.backends import make_executor
from sim.config import Config, ConfigError
from sim.net import build_link
from sim.nonn.settings import NonnSettings
from sim.report import save_figure, write_csvs, write_json
from sim.seeding import stream

__all__ = ["DeviceLoad", "InferencePlan", "calibration", "run", "simulate_inference", "simulate_split"]

FLOAT_BYTES = 4


# --- the simulated inference ---------------------------------------------------------------
@dataclass(frozen=True)
class DeviceLoad:
    """One device of a NoNN deployment: its profile and the students it runs (in order)."""

    profile: DeviceProfile
    students: tuple[int, ...]


@dataclass(frozen=True)
class InferencePlan:
    """What one NoNN inference costs, from the real models: FLOPs of the common part (run once
    per device) and of each student's branch, bytes of the input image and of each student's
    pooled features, FLOPs of the aggregator's FC layer."""

    common_flops: int
    branch_flops: tuple[int, ...]
    image_bytes: int
    feature_bytes: tuple[int, ...]
    fc_flops: int


@dataclass
class DeviceTrace:
    device: int
    profile: str
    students: tuple[int, ...]
    failed: bool = False
    compute_flops: int = 0
    compute_s: float = 0.0
    download_s: float = 0.0
    upload_s: float = 0.0
    receive_s: float = 0.0  # other receptions (the split baseline's slices)
    retransmissions: int = 0
    energy_j: float = 0.0


@dataclass
class InferenceOutcome:
    latency_s: float
    devices: list[DeviceTrace]
    arrived: dict[int, np.ndarray] = field(default_factory=dict)  # student -> flip positions in its features
    bits_flipped: int = 0
    image_flips: dict[int, np.ndarray] = field(default_factory=dict)  # device -> flips in its copy of the image (raw)


def _energy(tr: DeviceTrace, p: DeviceProfile, total_s: float) -> float:
    busy = tr.compute_s + tr.download_s + tr.upload_s + tr.receive_s
    return (p.compute_w * tr.compute_s + p.receive_w * (tr.download_s + tr.receive_s) + p.transmit_w * tr.upload_s
            + p.idle_w * max(0.0, total_s - busy))


def _send(env: simpy.Environment, nic: simpy.Resource, link: Link, nbytes: int, rng: np.random.Generator):
    """One message through a network interface that sends one message at a time: waits for
    the interface, holds it for the transfer's time; returns the TransferOutcome."""
    with nic.request() as req:
        yield req
        out = transfer(link, nbytes, rng)
        yield env.timeout(out.time_s)
    return out


def simulate_inference(plan: InferencePlan, loads: Sequence[DeviceLoad], server: DeviceProfile, link: Link,
                       rng: np.random.Generator, *, failed: frozenset[int] = frozenset(),
                       deadline_s: float = math.inf) -> InferenceOutcome:
    """One NoNN inference as SimPy processes.

    The server sends the image to each live device in turn; its network interface handles one
    message at a time (a `Resource`), in both directions. A device runs its students one after
    the other (the common part once) and sends each student's pooled features as soon as they
    are ready. The server applies the FC layer when every student has arrived, or at
    `deadline_s`, to what has arrived (missing features count as zeros). A failed device never
    answers; a transfer the link gives up on never arrives.
    """
    env = simpy.Environment()
    nic = simpy.Resource(env, capacity=1)
    traces = [DeviceTrace(d, l.profile.name, l.students, failed=d in failed) for d, l in enumerate(loads)]
    expected = sum(len(l.students) for l in loads)  # the aggregator does not know who failed
    arrivals: dict[int, np.ndarray] = {}
    image_flips: dict[int, np.ndarray] = {}
    all_in = env.event()
    flips = [0]

    def over_link(tr: DeviceTrace, nbytes: int, direction: str):
        out = yield from _send(env, nic, link, nbytes, rng)
        tr.retransmissions += out.attempts - out.packets
        if direction == "down":
            tr.download_s += out.time_s
        else:
            tr.upload_s += out.time_s
        return out

    def device(d: int, load: DeviceLoad):
        tr = traces[d]
        got = yield from over_link(tr, plan.image_bytes, "down")
        if not got.delivered:
            return
        if len(got.flip_positions):
            image_flips[d] = got.flip_positions
            flips[0] += len(got.flip_positions)
        for j, s in enumerate(load.students):
            flops = plan.branch_flops[s] + (plan.common_flops if j == 0 else 0)
            dt = flops / load.profile.flops_per_s
            tr.compute_flops += flops
            tr.compute_s += dt
            yield env.timeout(dt)
            out = yield from over_link(tr, plan.feature_bytes[s], "up")
            if out.delivered:
                arrivals[s] = out.flip_positions
                flips[0] += len(out.flip_positions)
                if len(arrivals) == expected and not all_in.triggered:
                    all_in.succeed()

    def aggregator():
        if expected:
            yield all_in | env.timeout(deadline_s)
        else:
            yield env.timeout(deadline_s)
        yield env.timeout(plan.fc_flops / server.flops_per_s)

    for d in sorted(range(len(loads))):
        if d not in failed:
            env.process(device(d, loads[d]))
    done = env.process(aggregator())
    env.run(until=done)
    total = env.now
    for tr, load in zip(traces, loads):
        tr.energy_j = 0.0 if tr.failed else _energy(tr, load.profile, total)
    return InferenceOutcome(total, traces, dict(arrivals), flips[0], dict(image_flips))


def simulate_split(layers, pooled_bytes: Sequence[int], image_bytes: int, fc_flops: int, profiles: Sequence[DeviceProfile],
                   server: DeviceProfile, link: Link, rng: np.random.Generator) -> InferenceOutcome:
    """One inference of the horizontally split baseline as SimPy processes.

    The server sends the image to every device; then, for each convolution in order, each
    device first gathers the input slices the others send it (each device's interface sends one
    message at a time), then computes its share; finally each device sends its pooled slice to
    the server, which applies the FC layer. A transfer the link gives up on stalls the inference
    (latency = inf)."""
    env = simpy.Environment()
    n = len(profiles)
    nic = [simpy.Resource(env, capacity=1) for _ in range(n)]
    server_nic = simpy.Resource(env, capacity=1)
    traces = [DeviceTrace(d, p.name, ()) for d, p in enumerate(profiles)]
    # got[l][d]: the event that device d has all slices of layer l's input
    inbox = [[[env.event() for _src in range(n)] for _d in range(n)] for _l in layers]
    lost = [False]

    def send(src: int, dst: int, nbytes: int, ev: simpy.Event):
        out = yield from _send(env, nic[src], link, nbytes, rng)
        traces[src].upload_s += out.time_s
        traces[dst].receive_s += out.time_s
        traces[src].retransmissions += out.attempts - out.packets
        if out.delivered:
            ev.succeed()
        else:
            lost[0] = True

    image_in = [env.event() for _ in range(n)]

    def broadcast():
        for d in range(n):
            out = yield from _send(env, server_nic, link, image_bytes, rng)
            traces[d].download_s += out.time_s
            if out.delivered:
                image_in[d].succeed()
            else:
                lost[0] = True

    results = [env.event() for _ in range(n)]

    def device(d: int):
        yield image_in[d]
        for li, layer in enumerate(layers):
            if any(layer.exchange_bytes):
                mine = [inbox[li][d][s] for s in range(n) if s != d]
                for s in range(n):
                    if s != d:
                        env.process(send(d, s, layer.exchange_bytes[d], inbox[li][s][d]))
                yield env.all_of(mine)
            dt = layer.flops[d] / profiles[d].flops_per_s
            traces[d].compute_flops += layer.flops[d]
            traces[d].compute_s += dt
            yield env.timeout(dt)
        out = yield from _send(env, server_nic, link, pooled_bytes[d], rng)
        traces[d].upload_s += out.time_s
        if out.delivered:
            results[d].succeed()
        else:
            lost[0] = True

    def aggregator():
        yield env.all_of(results)
        yield env.timeout(fc_flops / server.flops_per_s)

    env.process(broadcast())
    for d in range(n):
        env.process(device(d))
    done = env.process(aggregator())
    env.run()  # every process ends; a lost transfer leaves `done` untriggered
    total = env.now if done.triggered and not lost[0] else math.inf
    for tr, p in zip(traces, profiles):
        tr.energy_j = _energy(tr, p, env.now)
    return InferenceOutcome(total, traces)


# --- calibration against the paper's hardware tables ------------------------------------------
# NoNN paper, tables 6 and 7 (CIFAR-10, 167 MFLOP students, 2.6 GFLOP teacher, wired network):
# (device, students) -> (computation ms, communication ms); teacher on one device: latency ms.
PAPER_TABLE7 = {("rpi3_400mhz", 2): (101.91, 13.10), ("rpi3_400mhz", 8): (106.24, 43.76),
                ("odroid_xu4", 2): (19.01, 6.00), ("odroid_xu4", 8): (20.60, 15.40)}
PAPER_TABLE6_ENERGY_MJ = {("rpi3_400mhz", 2): 238.98, ("rpi3_400mhz", 8): 249.15,
                          ("odroid_xu4", 2): 219.07, ("odroid_xu4", 8): 237.45}
PAPER_TEACHER_MS = {"rpi3_400mhz": 1405.0, "odroid_xu4": 224.0}
PAPER_TABLE8_SPLIT_S = {4: 23.0, 8: 28.5}  # split-ATKD (WRN40-2) total latency per inference, PyTorch on the Pis
PAPER_STUDENT_FLOPS, PAPER_TEACHER_FLOPS = 167e6, 2.6e9
PAPER_IMAGE_BYTES = 3 * 32 * 32 * FLOAT_BYTES  # a CIFAR-10 image as float32
PAPER_PARTITION_FILTERS = 80  # 34 + 46 filters kept out of 256 (figure 6a)


def calibration(link: Link, server: DeviceProfile, seed: int) -> pd.DataFrame:
    """The paper's deployments, simulated with the catalogue profiles over `link`, beside the
    paper's measured figures. The students' FLOPs are the paper's (167 M each); they send their
    pooled features (80 kept filters shared among them, float32)."""
    rows = []
    for (name, k), (comp_ms, comm_ms) in PAPER_TABLE7.items():
        p = CATALOGUE[name]
        sizes = [PAPER_PARTITION_FILTERS // k + (i < PAPER_PARTITION_FILTERS % k) for i in range(k)]
        plan = InferencePlan(0, (int(PAPER_STUDENT_FLOPS),) * k, PAPER_IMAGE_BYTES,
                             tuple(s * FLOAT_BYTES for s in sizes), 2 * PAPER_PARTITION_FILTERS * 10)
        out = simulate_inference(plan, [DeviceLoad(p, (i,)) for i in range(k)], server, link, stream(seed, "calibration", name, k))
        compute = max(t.compute_s for t in out.devices)
        rows.append({"deployment": f"NoNN-{k}S", "device": name, "sim_compute_ms": 1e3 * compute,
                     "paper_compute_ms": comp_ms, "sim_communication_ms": 1e3 * (out.latency_s - compute),
                     "paper_communication_ms": comm_ms, "sim_latency_ms": 1e3 * out.latency_s,
                     "paper_latency_ms": comp_ms + comm_ms,
                     "sim_energy_per_node_mj": 1e3 * float(np.mean([t.energy_j for t in out.devices])),
                     "paper_energy_per_node_mj": PAPER_TABLE6_ENERGY_MJ[(name, k)]})
    for name, ms in PAPER_TEACHER_MS.items():
        p = CATALOGUE[name]
        plan = InferencePlan(0, (int(PAPER_TEACHER_FLOPS),), PAPER_IMAGE_BYTES, (10 * FLOAT_BYTES,), 0)
        out = simulate_inference(plan, [DeviceLoad(p, (0,))], server, link, stream(seed, "calibration", name, 0))
        rows.append({"deployment": "teacher (one device)", "device": name,
                     "sim_compute_ms": 1e3 * out.devices[0].compute_s, "paper_compute_ms": math.nan,
                     "sim_communication_ms": 1e3 * (out.latency_s - out.devices[0].compute_s),
                     "paper_communication_ms": math.nan, "sim_latency_ms": 1e3 * out.latency_s,
                     "paper_latency_ms": ms, "sim_energy_per_node_mj": 1e3 * out.devices[0].energy_j,
                     "paper_energy_per_node_mj": math.nan})
    # table 8: the ATKD student WRN40-2 split over 4 and 8 Raspberry Pis (measured with PyTorch
    # 0.4.1 on the Pis, not TVM: slower compute than the profile's TVM-derived rate), CIFAR-size input
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        wrn40_2 = WRN(40, scaled_widths(2), 3, 10)
        image = torch.randn(1, 3, 32, 32)
    for k, seconds in PAPER_TABLE8_SPLIT_S.items():
        p = CATALOGUE["rpi3_400mhz"]
        layers, pooled = split_work(wrn40_2, image, k)
        out = simulate_split(layers, pooled, PAPER_IMAGE_BYTES, 2 * 128 * 10, [p] * k, server, link,
                             stream(seed, "calibration", "split", k))
        compute = max(t.compute_s for t in out.devices)
        rows.append({"deployment": f"split ATKD WRN40-2 over {k}", "device": p.name, "sim_compute_ms": 1e3 * compute,
                     "paper_compute_ms": math.nan, "sim_communication_ms": 1e3 * (out.latency_s - compute),
                     "paper_communication_ms": math.nan, "sim_latency_ms": 1e3 * out.latency_s,
                     "paper_latency_ms": 1e3 * seconds,
                     "sim_energy_per_node_mj": 1e3 * float(np.mean([t.energy_j for t in out.devices])),
                     "paper_energy_per_node_mj": math.nan})
    df = pd.DataFrame(rows)
    df["latency_error_pct"] = 100 * (df["sim_latency_ms"] / df["paper_latency_ms"] - 1)
    return df


# --- the job ----------------------------------------------------------------------------------
@dataclass
class Trained:
    teacher: WRN
    nonn: NoNN
    nonn_kd: NoNN | None
    kd: WRN | None
    atkd: WRN | None
    partition: KnowledgePartition
    costs: list[StudentCost]
    student_width: float
    baseline_width: float | None
    teacher_val_accuracy: float
    p0_val_accuracy: float
    beta: float
    at_beta: float | None
    beta_search: pd.DataFrame


def _split_validation(data: Dataset, fraction: float, seed: int):
    perm = torch.as_tensor(stream(seed, "nonn-validation").permutation(len(data.x_train)))
    nv = max(1, round(len(perm) * fraction))
    v, t = perm[:nv], perm[nv:]
    return data.x_train[t], data.y_train[t], data.x_train[v], data.y_train[v]


def _seeded(seed: int, build):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


@torch.no_grad()
def _p0_accuracy(teacher: WRN, x: torch.Tensor, y: torch.Tensor, p0: Sequence[int]) -> float:
    """Validation accuracy with the P0 filters of the fconv zeroed."""
    teacher.eval()
    mask = torch.ones(teacher.widths[2])
    mask[list(p0)] = 0.0
    _, f = teacher.features(x)
    return float((teacher.head(f * mask[None, :, None, None]).argmax(1) == y).float().mean())


def train_all(cfg: Config, data: Dataset, executor) -> Trained:
    """Every model of the job, trained (or loaded from the model cache) on `executor`: the
    teacher first (the students learn from it), then every student model at once, since they
    are independent of one another: the NoNN per `beta_search` weight, NoNN with KD only, the KD
    student and the ATKD student per `at_beta_search` weight (in parallel on `backend=ray`)."""
    n, seed = cfg.workload, cfg.seed
    x_tr, y_tr, x_val, y_val = _split_validation(data, n.val_fraction, seed)
    c, k = data.input_shape[0], data.num_classes
    ts = dict(batch_size=n.batch_size, lr=n.lr, momentum=n.momentum, weight_decay=n.weight_decay)
    data_key = {"dataset": cfg.dataset.name, "path": cfg.dataset.path, "num_samples": cfg.dataset.num_samples,
                "n_train": len(x_tr), "seed": seed, "val_fraction": n.val_fraction}

    t_seed = int(stream(seed, "nonn-teacher").integers(2**31))
    teacher = _seeded(t_seed, lambda: WRN(n.teacher_depth, scaled_widths(n.teacher_width), c, k))
    t_key = {**data_key, "depth": n.teacher_depth, "width": n.teacher_width, "epochs": n.teacher_epochs, **ts}
    t_settings = TrainSettings(n.teacher_epochs, seed=t_seed, **ts)
    train_cached(executor, cfg.cache_dir, [Training("nonn-teacher", t_key, teacher, train_teacher, (x_tr, y_tr, t_settings),
                                                    seed=t_seed)])
    teacher.eval()

    with torch.no_grad():
        _, f_val = teacher.features(x_val)
    activity = f_val.mean(dim=(2, 3)).numpy()
    kp = partition_filters(activity, n.num_students, rule=n.rule, top=n.top_filters, percentile=n.edge_percentile,
                           resolution=n.resolution, seed=int(stream(seed, "nonn-louvain").integers(2**31)), balance=n.balance)
    spec, width, costs = size_students(n.student_depth, kp.sizes, data.input_shape, k,
                                       memory_budget_bytes=n.memory_budget_bytes, bytes_per_param=n.bytes_per_param,
                                       flop_budget=n.flop_budget, common_group=n.common_group, width=n.student_width)
    targets = teacher_targets(teacher, x_tr)
    kd_scale = 2 * n.temperature**2 if n.kd_scale is None else n.kd_scale
    ds = DistillSettings(n.alpha, n.temperature, kd_scale, n.beta, n.at_beta)
    s_key = {"teacher": t_key, "partition": [list(p) for p in kp.parts], "spec": asdict(spec), "epochs": n.student_epochs,
             "alpha": n.alpha, "temperature": n.temperature, "kd_scale": kd_scale, **ts}
    order = [list(p) for p in kp.parts]

    def nonn_model(name: str, at: bool, beta: float) -> Training:
        s = int(stream(seed, name).integers(2**31))
        model = _seeded(s, lambda: NoNN(spec, kp.sizes, c, k))
        settings = TrainSettings(n.student_epochs, seed=s, **ts)
        return Training(name, {**s_key, "activation_transfer": at, "beta": beta if at else None}, model, train_nonn,
                        (x_tr, y_tr, targets, order, settings, replace(ds, beta=beta), at), seed=s)

    def single(name: str, at: bool, beta: float, b_width: float) -> Training:
        s = int(stream(seed, name).integers(2**31))
        model = _seeded(s, lambda: WRN(n.student_depth, scaled_widths(b_width), c, k))
        settings = TrainSettings(n.student_epochs, seed=s, **ts)
        return Training(name, {**s_key, "width": b_width, "attention_transfer": at, "at_beta": beta if at else None},
                        model, train_single, (x_tr, y_tr, targets, settings, replace(ds, at_beta=beta), at), seed=s)

    betas = list(n.beta_search) or [n.beta]
    trainings = [nonn_model("nonn-students", True, b) for b in betas]
    b_width = None
    at_betas: list[float] = []
    if n.baselines:  # the single students as large as the NoNN (whose size training does not change)
        b_width = match_width(n.student_depth, count_params(trainings[0].model), c, k)
        at_betas = list(n.at_beta_search) or [n.at_beta]
        trainings += [nonn_model("nonn-students-kd", False, 0.0), single("nonn-kd-student", False, 0.0, b_width)]
        trainings += [single("nonn-atkd-student", True, b, b_width) for b in at_betas]
    train_cached(executor, cfg.cache_dir, trainings)
    models = [t.model.eval() for t in trainings]
    search: list[dict] = []

    def best(name: str, candidates: list[float], trained: list[torch.nn.Module]) -> tuple[torch.nn.Module, float]:
        """The model, of one per weight, best on the validation set (ties: the first)."""
        found = None
        for beta, model in zip(candidates, trained):
            val = accuracy(model, x_val, y_val)
            search.append({"model": name, "beta": beta, "val_accuracy": val})
            if found is None or val > found[2]:
                found = (model, beta, val)
        return found[0], found[1]

    nonn, beta = best("NoNN", betas, models[:len(betas)])
    nonn_kd = kd = atkd = at_beta = None
    if n.baselines:
        nonn_kd, kd = models[len(betas):len(betas) + 2]
        atkd, at_beta = best("ATKD student", at_betas, models[len(betas) + 2:])
    return Trained(teacher, nonn, nonn_kd, kd, atkd, kp, costs, width, b_width,
                   accuracy(teacher, x_val, y_val), _p0_accuracy(teacher, x_val, y_val, kp.p0), beta, at_beta,
                   pd.DataFrame(search))


@torch.no_grad()
def _pooled_features(model: NoNN, x: torch.Tensor) -> list[np.ndarray]:
    """Each student's pooled features on `x`, as the float32 arrays a device would send."""
    return [m.mean(dim=(2, 3)).numpy().astype(np.float32) for m in model.student_maps(x)]


@torch.no_grad()
def _aggregate(model: NoNN, pooled: list[np.ndarray]) -> np.ndarray:
    return model.aggregate([torch.from_numpy(np.ascontiguousarray(p)) for p in pooled]).argmax(1).numpy()


def _plan(model: NoNN, input_shape) -> InferencePlan:
    x = torch.zeros(1, *input_shape)
    h = model.common(x)
    pooled = torch.zeros(1, sum(model.sizes))
    return InferencePlan(forward_flops(model.common, x), tuple(forward_flops(b, h) for b in model.branches),
                         int(x.numel() * x.element_size()), tuple(s * FLOAT_BYTES for s in model.sizes),
                         forward_flops(model.fc, pooled))


def _scenarios(k: int, small: DeviceProfile, big: DeviceProfile) -> list[tuple[str, list[DeviceLoad]]]:
    out = [(f"homogeneous {small.name}", [DeviceLoad(small, (i,)) for i in range(k)]),
           (f"homogeneous {big.name}", [DeviceLoad(big, (i,)) for i in range(k)])]
    for j in range(1, k + 1):  # figure 7: the big device takes j students, small devices one each
        out.append((f"{big.name} runs {j}", [DeviceLoad(big, tuple(range(j)))] + [DeviceLoad(small, (i,)) for i in range(j, k)]))
    return out


def _device_rows(scenario: str, method: str, out: InferenceOutcome, loads_params: list[int], bytes_per_param: float,
                 profiles: Sequence[DeviceProfile]) -> list[dict]:
    return [{"scenario": scenario, "method": method, "device": t.device, "profile": t.profile,
             "students": " ".join(map(str, t.students)), "params": p, "memory_bytes": int(math.ceil(p * bytes_per_param)),
             "device_memory_bytes": prof.memory_bytes, "compute_flops": t.compute_flops, "compute_s": t.compute_s,
             "download_s": t.download_s, "upload_s": t.upload_s, "receive_s": t.receive_s,
             "retransmissions": t.retransmissions, "energy_j": t.energy_j}
            for t, p, prof in zip(out.devices, loads_params, profiles)]


def _mean_rows(rows: list[list[dict]]) -> list[dict]:
    """Per device, the mean over the simulated inferences of the numeric columns."""
    out = []
    for per_device in zip(*rows):
        r = dict(per_device[0])
        for key in ("compute_s", "download_s", "upload_s", "receive_s", "energy_j", "retransmissions"):
            r[key] = float(np.mean([x[key] for x in per_device]))
        out.append(r)
    return out


def simulate_fleet(cfg: Config, tr: Trained, data: Dataset, link: Link):
    """inference.csv, inference_devices.csv, robustness.csv rows, and the delivered accuracy."""
    n, seed = cfg.workload, cfg.seed
    k = len(tr.nonn.sizes)
    small, big, server = CATALOGUE[n.device], CATALOGUE[n.big_device], CATALOGUE[n.server]
    plan = _plan(tr.nonn, data.input_shape)
    common_p = count_params(tr.nonn.common)
    branch_p = [count_params(b) for b in tr.nonn.branches]
    pooled = _pooled_features(tr.nonn, data.x_test)
    y = data.y_test.numpy()
    scen_rows, dev_rows = [], []

    # NoNN on each scenario; the homogeneous small-device one also gives the delivered accuracy
    delivered_acc, flipped = math.nan, 0
    for si, (name, loads) in enumerate(_scenarios(k, small, big)):
        outs, device_runs = [], []
        n_images = len(y) if si == 0 else n.timing_images
        received = [np.zeros_like(p) for p in pooled]
        for img in range(n_images):
            out = simulate_inference(plan, loads, server, link, stream(seed, "nonn-inference", si, img), deadline_s=n.deadline_s)
            outs.append(out)
            if img < n.timing_images:
                params = [common_p + sum(branch_p[s] for s in l.students) for l in loads]
                device_runs.append(_device_rows(name, "NoNN", out, params, n.bytes_per_param, [l.profile for l in loads]))
            if si == 0:
                flipped += out.bits_flipped
                redo = {}  # raw mode: a device whose copy of the image was corrupted computes on it
                for d, flips in out.image_flips.items():
                    bad = data.x_test[img:img + 1].numpy().copy()
                    flip_bits(bad.view(np.uint8).reshape(-1), flips)
                    with torch.no_grad(), np.errstate(over="ignore", invalid="ignore"):
                        maps = tr.nonn.student_maps(torch.from_numpy(bad), list(loads[d].students))
                    redo.update({s: m.mean(dim=(2, 3))[0].numpy().astype(np.float32)
                                 for s, m in zip(loads[d].students, maps)})
                for s, flips in out.arrived.items():
                    row = redo[s].copy() if s in redo else pooled[s][img].copy()
                    if len(flips):
                        flip_bits(row.view(np.uint8), flips)
                    received[s][img] = row
        if si == 0:
            with np.errstate(over="ignore", invalid="ignore"):
                delivered_acc = float(np.mean(_aggregate(tr.nonn, received) == y))
        dev = _mean_rows(device_runs)
        dev_rows += dev
        lat = np.array([o.latency_s for o in outs[: n.timing_images]])
        compute = max(d["compute_s"] for d in dev)
        scen_rows.append({"scenario": name, "method": "NoNN", "devices": len(loads), "students": k,
                          "latency_s": float(lat.mean()), "latency_max_s": float(lat.max()), "compute_s": compute,
                          "communication_s": float(lat.mean()) - compute,
                          "energy_per_node_j": float(np.mean([d["energy_j"] for d in dev])),
                          "energy_total_j": float(sum(d["energy_j"] for d in dev)),
                          "bytes_per_inference": plan.image_bytes * len(loads) + sum(plan.feature_bytes),
                          "delivered_accuracy": delivered_acc if si == 0 else math.nan})

    # the teacher on one small device (the paper's table 6 reference)
    t_plan = InferencePlan(0, (forward_flops(tr.teacher, torch.zeros(1, *data.input_shape)),), plan.image_bytes,
                           (data.num_classes * FLOAT_BYTES,), 0)
    t_outs = [simulate_inference(t_plan, [DeviceLoad(small, (0,))], server, link, stream(seed, "nonn-teacher-inf", img))
              for img in range(n.timing_images)]
    t_dev = _mean_rows([_device_rows(f"teacher on one {small.name}", "teacher", o, [count_params(tr.teacher)],
                                     n.bytes_per_param, [small]) for o in t_outs])
    dev_rows += t_dev
    t_lat = float(np.mean([o.latency_s for o in t_outs]))
    scen_rows.append({"scenario": f"teacher on one {small.name}", "method": "teacher", "devices": 1, "students": 0,
                      "latency_s": t_lat, "latency_max_s": max(o.latency_s for o in t_outs),
                      "compute_s": t_dev[0]["compute_s"], "communication_s": t_lat - t_dev[0]["compute_s"],
                      "energy_per_node_j": t_dev[0]["energy_j"], "energy_total_j": t_dev[0]["energy_j"],
                      "bytes_per_inference": t_plan.image_bytes + t_plan.feature_bytes[0], "delivered_accuracy": math.nan})

    # the horizontally split baseline on k devices of each kind
    split_model = tr.atkd if n.split_model == "atkd" else tr.teacher
    split_name = f"split {n.split_model}"
    layers, pooled_bytes = split_work(split_model, data.x_test[:1], k)
    fc_flops = forward_flops(split_model.fc, torch.zeros(1, split_model.widths[2]))
    exchanged = sum(b * (k - 1) for layer in layers for b in layer.exchange_bytes)
    split_params = count_params(split_model)
    for prof in (small, big):
        name = f"homogeneous {prof.name}"
        outs = [simulate_split(layers, pooled_bytes, plan.image_bytes, fc_flops, [prof] * k, server, link,
                               stream(seed, "nonn-split", prof.name, img)) for img in range(n.timing_images)]
        dev = _mean_rows([_device_rows(name, split_name, o, [split_params // k] * k, n.bytes_per_param, [prof] * k)
                          for o in outs])
        dev_rows += dev
        lat = np.array([o.latency_s for o in outs])
        compute = max(d["compute_s"] for d in dev)
        scen_rows.append({"scenario": name, "method": split_name, "devices": k, "students": 0,
                          "latency_s": float(lat.mean()), "latency_max_s": float(lat.max()), "compute_s": compute,
                          "communication_s": float(lat.mean()) - compute,
                          "energy_per_node_j": float(np.mean([d["energy_j"] for d in dev])),
                          "energy_total_j": float(sum(d["energy_j"] for d in dev)),
                          "bytes_per_inference": plan.image_bytes * k + exchanged + sum(pooled_bytes),
                          "delivered_accuracy": math.nan})

    # robustness: every subset of failed devices (homogeneous small devices, one student each)
    loads = [DeviceLoad(small, (i,)) for i in range(k)]
    rob = []
    for active_n in range(1, k + 1):
        accs, lats = [], []
        for active in itertools.combinations(range(k), active_n):
            failed = frozenset(range(k)) - set(active)
            out = simulate_inference(plan, loads, server, link, stream(seed, "nonn-robustness", *active),
                                     failed=failed, deadline_s=n.deadline_s)
            feats = [pooled[s] if s in out.arrived else np.zeros_like(pooled[s]) for s in range(k)]
            accs.append(float(np.mean(_aggregate(tr.nonn, feats) == y)))
            lats.append(out.latency_s)
        rob.append({"active_devices": active_n, "failed_devices": k - active_n, "subsets": len(accs),
                    "accuracy_min": min(accs), "accuracy_mean": float(np.mean(accs)), "accuracy_max": max(accs),
                    "latency_mean_s": float(np.mean(lats))})
    return pd.DataFrame(scen_rows), pd.DataFrame(dev_rows), pd.DataFrame(rob), (delivered_acc, flipped)


def _plots(out_dir, scenarios: pd.DataFrame, robustness: pd.DataFrame, k: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    r = robustness
    ax.plot(r["active_devices"], r["accuracy_mean"], marker="o", label="mean over subsets")
    ax.fill_between(r["active_devices"], r["accuracy_min"], r["accuracy_max"], alpha=0.25, label="min to max")
    ax.set_xlabel("active devices")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"NoNN-{k}S: accuracy when devices fail")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, out_dir / "robustness.png")

    fig, ax = plt.subplots(figsize=(8, 4.5))
    s = scenarios
    labels = [f"{m}\n{sc}" for m, sc in zip(s["method"], s["scenario"])]
    ax.barh(labels, 1e3 * s["compute_s"], label="compute (slowest device)")
    ax.barh(labels, 1e3 * s["communication_s"], left=1e3 * s["compute_s"], label="communication and waiting")
    ax.set_xscale("log")
    ax.set_xlabel("simulated latency per inference (ms, log)")
    ax.tick_params(axis="y", labelsize=6)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, out_dir / "latency.png")


def run(cfg: Config, out_dir, *, in_sweep: bool = False) -> pd.DataFrame:
    """The NoNN job; returns its summary row."""
    out_dir = Path(out_dir)
    n = cfg.workload
    try:
        link = build_link(cfg.channel)
        data = load_dataset(cfg.dataset.name, path=cfg.dataset.path, seed=cfg.seed, num_samples=cfg.dataset.num_samples)
    except (FileNotFoundError, ValueError) as exc:
        raise ConfigError(str(exc).splitlines()[0]) from None
    h, w = data.input_shape[1:]
    if h < 4 or w < 4:
        raise ConfigError(f"dataset.name={cfg.dataset.name!r}: images of {h}x{w} are too small for a WRN (needs >= 4x4)")
    t0 = time.perf_counter()
    with make_executor(cfg) as executor:  # the trainings on `cfg.backend` (Ray started only if one is not cached)
        tr = train_all(cfg, data, executor)
    wall = {"train_s": round(time.perf_counter() - t0, 3)}
    t0 = time.perf_counter()
    scenarios, devices, robustness, (delivered, flipped) = simulate_fleet(cfg, tr, data, link)
    wall["simulate_s"] = round(time.perf_counter() - t0, 3)
    k = len(tr.nonn.sizes)

    kp = tr.partition
    partition = pd.DataFrame([{"partition": "P0 (dropped)", "student": -1, "filters": len(kp.p0),
                               "filter_ids": " ".join(map(str, kp.p0))}] +
                             [{"partition": f"P{i + 1}", "student": i, "filters": len(p), "filter_ids": " ".join(map(str, p))}
                              for i, p in enumerate(kp.parts)])
    x1 = torch.zeros(1, *data.input_shape)
    acc = lambda m: accuracy(m, data.x_test, data.y_test) if m is not None else math.nan  # noqa: E731
    students = pd.DataFrame([{**asdict(c), "width_multiplier": tr.student_width,
                              "widths": " ".join(map(str, tr.nonn.spec.widths)), "fits_budget": c.fits} for c in tr.costs])
    models = [("teacher", tr.teacher, count_params(tr.teacher), forward_flops(tr.teacher, x1), 1)]
    models.append(("NoNN", tr.nonn, max(c.params for c in tr.costs), max(c.flops for c in tr.costs), k))
    if tr.nonn_kd is not None:
        models.append(("NoNN, KD only", tr.nonn_kd, max(c.params for c in tr.costs), max(c.flops for c in tr.costs), k))
        for name, m in (("KD student", tr.kd), ("ATKD student", tr.atkd)):
            models.append((name, m, count_params(m), forward_flops(m, x1), 1))
    comparison = pd.DataFrame([{"model": name, "accuracy": acc(m), "total_params": count_params(m),
                                "params_per_device": p, "flops_per_device": f, "devices": d,
                                "memory_per_device_bytes": int(math.ceil(p * n.bytes_per_param)),
                                "memory_budget_bytes": n.memory_budget_bytes,
                                "fits_budget": bool(p * n.bytes_per_param <= n.memory_budget_bytes and f <= n.flop_budget)}
                               for name, m, p, f, d in models])
    calib = calibration(link, CATALOGUE[n.server], cfg.seed) if n.calibrate else None

    nonn_row = scenarios.iloc[0]
    split_row = scenarios[scenarios["method"].str.startswith("split")].iloc[0]
    teacher_row = scenarios[scenarios["method"] == "teacher"].iloc[0]
    c = cfg.channel
    accs = dict(zip(comparison["model"], comparison["accuracy"]))
    summary = pd.DataFrame([{
        "workload": "nonn", "seed": cfg.seed, "dataset": cfg.dataset.name, "num_students": k, "rule": n.rule,
        "resolution": n.resolution, "device": n.device, "channel_model": c.model, "channel_mode": c.mode,
        "channel_ber": c.ber, "bandwidth_bps": c.bandwidth_bps, "latency_s": c.latency_s,
        "memory_budget_bytes": n.memory_budget_bytes, "flop_budget": n.flop_budget,
        "teacher_accuracy": accs["teacher"], "nonn_accuracy": accs["NoNN"],
        "nonn_kd_only_accuracy": accs.get("NoNN, KD only", math.nan), "kd_student_accuracy": accs.get("KD student", math.nan),
        "atkd_student_accuracy": accs.get("ATKD student", math.nan), "nonn_beta": tr.beta,
        "atkd_beta": math.nan if tr.at_beta is None else tr.at_beta, "nonn_delivered_accuracy": delivered,
        "nonn_bits_flipped": flipped,
        "communities": kp.communities, "modularity": kp.modularity, "p0_filters": len(kp.p0),
        "partition_sizes": " ".join(map(str, kp.sizes)), "teacher_val_accuracy": tr.teacher_val_accuracy,
        "p0_zeroed_val_accuracy": tr.p0_val_accuracy, "delta_val_accuracy": tr.p0_val_accuracy - tr.teacher_val_accuracy,
        "student_params_max": max(c_.params for c_ in tr.costs), "student_flops_max": max(c_.flops for c_ in tr.costs),
        "students_fit_budget": all(c_.fits for c_ in tr.costs),
        "nonn_latency_s": nonn_row["latency_s"], "nonn_energy_per_node_j": nonn_row["energy_per_node_j"],
        "split_latency_s": split_row["latency_s"], "speedup_vs_split": split_row["latency_s"] / nonn_row["latency_s"],
        "teacher_latency_s": teacher_row["latency_s"], "speedup_vs_teacher": teacher_row["latency_s"] / nonn_row["latency_s"],
        "accuracy_one_device_failed_mean": robustness.iloc[-2]["accuracy_mean"] if k > 1 else math.nan,
        "accuracy_one_device_active_max": robustness.iloc[0]["accuracy_max"],
    }])
    tables = {"partition.csv": partition, "students.csv": students, "comparison.csv": comparison,
              "inference.csv": scenarios, "inference_devices.csv": devices, "robustness.csv": robustness,
              "calibration.csv": calib, "beta_search.csv": tr.beta_search, "summary.csv": summary}
    write_csvs(out_dir, {name: df for name, df in tables.items() if df is not None})
    write_json({**executor.timings(), "wall_s": wall}, out_dir / "wallclock.json")
    if cfg.plots:
        _plots(out_dir, scenarios, robustness, k)
    if cfg.progress:
        _print_summary(summary.iloc[0], comparison, out_dir)
    return summary


def _print_summary(s: pd.Series, comparison: pd.DataFrame, out_dir) -> None:
    print(f"NoNN-{s['num_students']}S on {s['dataset']}: partitions {s['partition_sizes']} (P0 {s['p0_filters']} filters, "
          f"modularity {s['modularity']:.3f}, val accuracy change with P0 zeroed {s['delta_val_accuracy']:+.3f})")
    for _, r in comparison.iterrows():
        print(f"  {r['model']:<14} accuracy {r['accuracy']:.4f}  params/device {r['params_per_device']:>9,}  "
              f"FLOPs/device {r['flops_per_device']:>12,}")
    print(f"  latency: NoNN {1e3 * s['nonn_latency_s']:.2f} ms, split baseline {1e3 * s['split_latency_s']:.2f} ms "
          f"(speed-up {s['speedup_vs_split']:.1f}x), teacher on one device {1e3 * s['teacher_latency_s']:.2f} ms")
    print(f"  reports in {out_dir}")

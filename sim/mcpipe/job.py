"""mcPipe (issue 5): model-parallel pipeline training on simulated memory-constrained devices.

The only place of this workload that owns time. Every schedule trains the real weights of
the same model from the same initial weights on the same microbatch stream:

- local: worker 0 trains the whole model alone (it holds the data);
- data_parallel: every worker trains the whole model on its share; after each step the
  master averages the weights and sends them back (weights cross the links every step);
- pipedream: the layers split into N stages, 1F1B with weight stashing;
- mcpipe: the same schedule with one stored weight version plus (activation, error) pairs,
  later versions rebuilt on demand (paper section IV-C);
- greedy: the same schedule with the latest weights only (GreedyUpdates).

Each worker is a SimPy process with a mailbox; a compute step lasts the FLOPs it really
performed (counted with FlopCounterMode) over the device's FLOP rate; each activation, error,
data or weight message holds the sender's radio for `channels.transfer` of its real bytes,
while the sender computes on. A monitor process records test accuracy every
`eval_every_s` simulated seconds until `sim_time_s`.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import simpy
import torch

from channels import Link, corrupt_arrays, transfer
from devices import CATALOGUE, DeviceProfile
from experiments.common.data import Dataset, load_dataset
from experiments.mcpipe import (MODELS, PARTITIONS, SGD, FlopCache, Layer, Stage, balance, build_layers, evaluate,
                                make_store, stage_bounds)
from experiments.mcpipe.versions import STORES, nbytes
from sim.backends import make_executor
from sim.config import Config, ConfigError
from sim.net import build_link
from sim.mcpipe.settings import PIPELINES, SCHEDULES, McpipeSettings
from sim.report import frame, save_figure, write_csv, write_csvs, write_json
from sim.seeding import stream

__all__ = ["SCHEDULES", "PIPELINES", "Job", "run", "simulate", "prepare"]

F32 = 4  # bytes per float32 element (theorem 1 counts elements)


# --- what every run of a model shares --------------------------------------------------------
class Batches:
    """The microbatch stream: microbatch k holds positions [k*b, (k+1)*b) of a sequence of
    seeded per-epoch permutations of the training set (the same for every schedule)."""

    def __init__(self, data: Dataset, b: int, seed: int) -> None:
        self.data, self.b, self.seed = data, b, seed
        self.order = np.empty(0, dtype=np.int64)
        self.epochs = 0

    def __call__(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(self.data.y_train)
        while len(self.order) < (k + 1) * self.b:
            perm = stream(self.seed, "order", self.epochs).permutation(n)
            self.order = np.concatenate([self.order, perm])
            self.epochs += 1
        idx = torch.from_numpy(self.order[k * self.b:(k + 1) * self.b])
        return self.data.x_train[idx], self.data.y_train[idx]


@dataclass
class Job:
    """One model's shared pieces: layers, initial weights, FLOP counts, data and settings."""

    cfg: Config
    model: str
    layers: list[Layer]
    init: list[tuple[torch.Tensor, torch.Tensor]]
    data: Dataset
    link: Link
    flops: FlopCache
    layer_flops: list[int]  # training FLOPs of one microbatch per layer (forward + backward + update)
    pair_bytes: list[int]  # one microbatch's (activation, error) pair per layer

    @property
    def m(self) -> McpipeSettings:
        return self.cfg.workload

    def device(self, i: int) -> DeviceProfile:
        return CATALOGUE[self.m.devices[i % len(self.m.devices)]]

    def opt(self) -> SGD:
        return SGD(self.m.lr, self.m.momentum, self.m.weight_decay)

    def partition(self, n: int) -> list[tuple[int, int]]:
        if self.m.partition == "layers":
            starts = [0, *self.m.boundaries]
        else:
            speeds = [self.device(i).flops_per_s if self.m.partition == "time" else 1.0 for i in range(n)]
            starts = balance(self.layer_flops, speeds)
        return stage_bounds(starts, len(self.layers))

    def params(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(w.clone(), b.clone()) for w, b in self.init]


def _layer_costs(layers: list[Layer], init, flops: FlopCache, x: torch.Tensor, y: torch.Tensor, opt: SGD):
    """Per layer, from one real training step of a microbatch on the whole model: training
    FLOPs (forward, error down, weight gradient, optimiser) and the (a, dz) pair's bytes."""
    stores = [make_store("pipedream", layer, p, opt, flops) for layer, p in zip(layers, init)]
    stage = Stage(0, layers, stores, flops, first=True, last=True)
    out, rec, c_fwd = stage.forward(x)
    _, d = stage.loss_error(out, y)
    _, pairs, _ = stage.backward(rec, d)
    per_layer = []
    for i, layer in enumerate(layers):
        a, dz = pairs[i]
        f = flops.cache[("fwd", layer.index, tuple(rec.inputs[i].shape))]
        f += flops.cache.get(("bwd", layer.index, tuple(dz.shape)), 0)
        _, g = flops.run(("wgrad", layer.index, tuple(a.shape)), lambda: layer.weight_grad(a, dz))
        per_layer.append(f + g + opt.elementwise_flops(layer.num_params))
    return per_layer, [nbytes(a, dz) for a, dz in pairs]


def prepare(cfg: Config) -> list[Job]:
    """Check the settings and build every model's shared pieces; raises ConfigError."""
    m = cfg.workload
    
    try:
        data = load_dataset(cfg.dataset.name, path=cfg.dataset.path, seed=cfg.seed, num_samples=cfg.dataset.num_samples)
        link = build_link(cfg.channel)
    except (FileNotFoundError, ValueError) as exc:
        raise ConfigError(str(exc).splitlines()[0]) from None
    jobs = []
    for name in m.models:
        layers = build_layers(name, data.input_shape, data.num_classes, widths=m.vgg_widths, hidden=m.vgg_hidden,
                              fc_hidden=m.fc_hidden, fc_depth=m.fc_depth)
        gen = torch.Generator().manual_seed(int(stream(cfg.seed, "model", name).integers(2**62)))
        init = [layer.init(gen) for layer in layers]
        flops = FlopCache()
        x, y = Batches(data, m.microbatch, cfg.seed)(0)
        opt = SGD(m.lr, m.momentum, m.weight_decay)
        layer_flops, pair_bytes = _layer_costs(layers, [(w.clone(), b.clone()) for w, b in init], flops, x, y, opt)
        jobs.append(Job(cfg, name, layers, init, data, link, flops, layer_flops, pair_bytes))
    return jobs


# --- the simulation's building blocks ---------------------------------------------------------
class Mailbox:
    """A worker's inbox: messages in arrival order, and an event that fires on the next one."""

    def __init__(self, env: simpy.Environment) -> None:
        self.env, self.items, self._event = env, [], None

    def put(self, msg: tuple) -> None:
        self.items.append(msg)
        if self._event is not None and not self._event.triggered:
            self._event.succeed()

    def wait(self) -> simpy.Event:
        self._event = self.env.event()
        return self._event


@dataclass
class Memory:
    """Peak bytes a worker holds, per kind and in total, from the real tensors."""

    peak: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("weights", "working", "vectors", "optimizer", "activations", "state", "total"), 0))
    max_versions: int = 0

    def observe(self, *, weights: int, vectors: int, optimizer: int, activations: int, working: int = 0,
                versions: int = 1) -> None:
        now = {"weights": weights, "working": working, "vectors": vectors, "optimizer": optimizer,
               "activations": activations, "state": weights + vectors + optimizer,
               "total": weights + working + vectors + optimizer + activations}
        for k, v in now.items():
            self.peak[k] = max(self.peak[k], int(v))
        self.max_versions = max(self.max_versions, versions)


@dataclass
class Net:
    """Links and their counters for one run."""

    env: simpy.Environment
    link: Link
    seed: int
    key: tuple
    bytes_sent: int = 0
    transfers: int = 0
    retransmissions: int = 0
    bits_flipped: int = 0
    radios: dict = field(default_factory=dict)
    rngs: dict = field(default_factory=dict)

    def send(self, src: str, payload: list[torch.Tensor], deliver: Callable[[list[torch.Tensor]], None]) -> Iterator:
        """Process: hold `src`'s radio while the tensors cross the link (resent whole if the
        link gives up on a packet), then hand them over; in raw mode with the flipped bits
        (floating-point tensors only: labels are not corrupted)."""
        radio = self.radios.setdefault(src, simpy.Resource(self.env, capacity=1))
        rng = self.rngs.setdefault(src, stream(self.seed, "link", *self.key, src))
        size = nbytes(*payload)
        with radio.request() as req:
            yield req
            while True:
                out = transfer(self.link, size, rng)
                self.transfers += 1
                self.bytes_sent += out.bits_sent // 8
                self.retransmissions += out.retransmissions
                yield self.env.timeout(out.time_s)
                if out.delivered:
                    break
        if out.bits_flipped:
            self.bits_flipped += out.bits_flipped
            arrays = corrupt_arrays([t.contiguous().numpy() for t in payload], out.flip_positions)
            # float payloads arrive as corrupted; integer labels are taken to travel with a
            # checksum (a few bytes of control data), so a raw link cannot make a class out of range
            payload = [torch.from_numpy(a) if t.is_floating_point() else t for a, t in zip(arrays, payload)]
        deliver(payload)


@dataclass
class RunResult:
    curve: list[dict]
    memory: list[dict]
    summary: dict
    trace: list[tuple]


def _monitor(env: simpy.Environment, job: Job, params: Callable[[], list], counters: Callable[[], dict],
             rows: list[dict]) -> Iterator:
    """Process: test accuracy of the current weights at 0, eval_every_s, ... up to sim_time_s."""
    m = job.m
    n = int(math.floor(m.sim_time_s / m.eval_every_s + 1e-9))
    for i in range(n + 1):
        if i:
            yield env.timeout(i * m.eval_every_s - env.now)
        acc, loss = evaluate(job.layers, params(), job.data.x_test, job.data.y_test)
        rows.append({"sim_time_s": env.now, "accuracy": acc, "loss": loss, **counters()})


def _stage_of(job: Job, schedule: str, index: int, first: int, end: int, init, first_stage: bool, last_stage: bool) -> Stage:
    opt = job.opt()
    stores = [make_store(schedule, job.layers[i], init[i], opt, job.flops, store=job.m.store, pair_bytes=job.pair_bytes[i],
                         lowrank=job.m.rebuild == "lowrank") for i in range(first, end)]
    return Stage(index, job.layers[first:end], stores, job.flops, first=first_stage, last=last_stage)


# --- pipeline schedules ------------------------------------------------------------------------
def simulate_pipeline(job: Job, schedule: str, n: int) -> RunResult:
    """PipeDream / mcPipe / GreedyUpdates on `n` workers: 1F1B, stage s admits up to m - s
    microbatches in flight (m = depth, default n); when both a forward and a backward are
    ready a stage does the kind it did not do last (one forward, one backward)."""
    m, env = job.m, simpy.Environment()
    depth = m.depth or n
    bounds = job.partition(n)
    init = job.params()
    stages = [_stage_of(job, schedule, s, a, b, init, s == 0, s == n - 1) for s, (a, b) in enumerate(bounds)]
    boxes = [Mailbox(env) for _ in range(n)]
    net = Net(env, job.link, job.cfg.seed, (job.model, n, schedule))
    credits = simpy.Container(env, capacity=m.prefetch, init=m.prefetch)
    batches = Batches(job.data, m.microbatch, job.cfg.seed)
    mems = [Memory() for _ in range(n)]
    trace: list[tuple] = []
    done = {"updates": 0, "samples": 0, "flops": 0}

    def master() -> Iterator:
        k = 0
        while True:
            yield credits.get(1)
            x, y = batches(k)
            yield env.process(net.send("master", [x], lambda p, k=k: boxes[0].put(("x", k, p[0]))))
            yield env.process(net.send("master", [y], lambda p, k=k: boxes[n - 1].put(("y", k, p[0]))))
            k += 1

    def worker(s: int) -> Iterator:
        stage, dev, mem = stages[s], job.device(s), mems[s]
        fwd: dict[int, torch.Tensor] = {}
        bwd: dict[int, torch.Tensor] = {}
        labels: dict[int, torch.Tensor] = {}
        inflight: dict = {}
        limit = max(1, depth - s)
        nxt, last = 0, ""

        def observe(working: int = 0) -> None:
            buffered = nbytes(*fwd.values(), *bwd.values())
            mem.observe(weights=stage.stored_weight_bytes, vectors=stage.vector_bytes, optimizer=stage.optimizer_bytes,
                        activations=sum(r.bytes for r in inflight.values()) + buffered, working=working,
                        versions=stage.num_versions)

        observe()
        while True:
            for kind, k, t in boxes[s].items:
                {"x": fwd, "a": fwd, "d": bwd, "y": labels}[kind][k] = t
            boxes[s].items.clear()
            can_f = nxt in fwd and len(inflight) < limit and (s < n - 1 or nxt in labels)
            if bwd and not (can_f and last == "B"):  # 1F1B: alternate when both are ready
                last = "B"
                k = min(bwd)
                rec = inflight[k]
                d_in, pairs, c = stage.backward(rec, bwd.pop(k))
                observe(c.working_bytes)
                del inflight[k]
                u = stage.update(pairs, min((r.version for r in inflight.values()), default=None))
                observe(u.working_bytes)
                trace.append((round(env.now, 9), s, "B", k, rec.version))
                flops = c.total_flops + u.total_flops
                done["flops"] += flops
                yield env.timeout(dev.compute_time_s(flops))
                if s == 0:
                    done["updates"] += 1
                    done["samples"] += m.microbatch
                if s > 0:
                    env.process(net.send(f"w{s}", [d_in], lambda p, k=k: boxes[s - 1].put(("d", k, p[0]))))
            elif can_f:
                last = "F"
                k, nxt = nxt, nxt + 1
                if s == 0:
                    yield credits.put(1)
                out, rec, c = stage.forward(fwd.pop(k))
                inflight[k] = rec
                observe(c.working_bytes)
                trace.append((round(env.now, 9), s, "F", k, rec.version))
                done["flops"] += c.total_flops
                yield env.timeout(dev.compute_time_s(c.total_flops))
                if s == n - 1:
                    _, d = stage.loss_error(out, labels.pop(k))
                    bwd[k] = d
                else:
                    env.process(net.send(f"w{s}", [out], lambda p, k=k: boxes[s + 1].put(("a", k, p[0]))))
            else:
                yield boxes[s].wait()

    rows: list[dict] = []
    env.process(master())
    for s in range(n):
        env.process(worker(s))
    mon = env.process(_monitor(env, job, lambda: [p for st in stages for p in st.latest_params()],
                               lambda: {"updates": done["updates"], "samples": done["samples"],
                                        "bytes_sent": net.bytes_sent}, rows))
    env.run(until=mon)
    return _result(job, schedule, n, rows, net, mems, stages, bounds, depth, trace)


# --- local and data-parallel ---------------------------------------------------------------------
def _train_step(stage: Stage, x: torch.Tensor, y: torch.Tensor, mem: Memory) -> int:
    """One real SGD step of the whole model held by `stage`; returns its FLOPs."""
    out, rec, c1 = stage.forward(x)
    _, d = stage.loss_error(out, y)
    _, pairs, c2 = stage.backward(rec, d)
    mem.observe(weights=stage.stored_weight_bytes, vectors=0, optimizer=stage.optimizer_bytes,
                activations=rec.bytes + nbytes(*(t for pr in pairs for t in pr)), versions=stage.num_versions)
    c3 = stage.update(pairs)
    return c1.total_flops + c2.total_flops + c3.total_flops


def simulate_local(job: Job) -> RunResult:
    """Worker 0 trains the whole model on the data it holds, one microbatch per step."""
    m, env = job.m, simpy.Environment()
    stage = _stage_of(job, "pipedream", 0, 0, len(job.layers), job.params(), True, True)
    batches, mem, dev = Batches(job.data, m.microbatch, job.cfg.seed), Memory(), job.device(0)
    net = Net(env, job.link, job.cfg.seed, (job.model, 1, "local"))
    done = {"updates": 0, "samples": 0}
    trace: list[tuple] = []

    def worker() -> Iterator:
        k = 0
        while True:
            trace.append((round(env.now, 9), 0, "FB", k, stage.latest))
            flops = _train_step(stage, *batches(k), mem)
            yield env.timeout(dev.compute_time_s(flops))
            done["updates"] += 1
            done["samples"] += m.microbatch
            k += 1

    rows: list[dict] = []
    env.process(worker())
    mon = env.process(_monitor(env, job, stage.latest_params, lambda: {**done, "bytes_sent": 0}, rows))
    env.run(until=mon)
    return _result(job, "local", 1, rows, net, [mem], [stage], [(0, len(job.layers))], 1, trace)


def simulate_data_parallel(job: Job, n: int) -> RunResult:
    """Each step: the master sends every worker its microbatch (and, after the first step,
    the averaged weights); each worker takes one SGD step on its microbatch and sends its
    weights back; the master averages them. Microbatch k of step t goes to worker k - t*n."""
    m, env = job.m, simpy.Environment()
    init = job.params()
    stages = [_stage_of(job, "pipedream", 0, 0, len(job.layers), [(w.clone(), b.clone()) for w, b in init], True, True)
              for _ in range(n)]
    mems = [Memory() for _ in range(n)]
    batches = Batches(job.data, m.microbatch, job.cfg.seed)
    net = Net(env, job.link, job.cfg.seed, (job.model, n, "data_parallel"))
    avg = {"params": init}
    done = {"updates": 0, "samples": 0}
    trace: list[tuple] = []

    def worker(i: int, t: int, x: torch.Tensor, y: torch.Tensor, uploads: list) -> Iterator:
        stage = stages[i]
        trace.append((round(env.now, 9), i, "FB", t * n + i, t))
        flops = _train_step(stage, x, y, mems[i])
        yield env.timeout(job.device(i).compute_time_s(flops))
        new = stage.latest_params()
        flat = [tt for p in new for tt in p]
        yield env.process(net.send(f"w{i}", flat, lambda p: uploads.__setitem__(i, p)))

    def master() -> Iterator:
        t = 0
        while True:
            uploads: list = [None] * n
            procs = []
            for i in range(n):
                x, y = batches(t * n + i)
                weights = [tt for p in avg["params"] for tt in p] if t else []
                got: dict = {}
                yield env.process(net.send("master", [*weights, x, y], lambda p, got=got: got.setdefault("p", p)))
                p = got["p"]
                x, y = p[-2], p[-1]
                if t:
                    _set_latest(stages[i], p[:-2])
                procs.append(env.process(worker(i, t, x, y, uploads)))
            yield simpy.AllOf(env, procs)
            with torch.no_grad():
                flat = [torch.stack(ts).mean(0) for ts in zip(*uploads)]
            avg["params"] = [(flat[2 * j], flat[2 * j + 1]) for j in range(len(job.layers))]
            done["updates"] += 1
            done["samples"] += n * m.microbatch
            t += 1

    rows: list[dict] = []
    env.process(master())
    mon = env.process(_monitor(env, job, lambda: avg["params"], lambda: {**done, "bytes_sent": net.bytes_sent}, rows))
    env.run(until=mon)
    return _result(job, "data_parallel", n, rows, net, mems, stages, [(0, len(job.layers))] * n, 1, trace)


def _set_latest(stage: Stage, flat: list[torch.Tensor]) -> None:
    """Replace a worker's latest weights by the received average (its momentum stays local)."""
    for j, store in enumerate(stage.stores):
        store.versions = {store.latest: (flat[2 * j], flat[2 * j + 1])}


def simulate(job: Job, schedule: str, n: int) -> RunResult:
    if schedule == "local":
        return simulate_local(job)
    if schedule == "data_parallel":
        return simulate_data_parallel(job, n)
    return simulate_pipeline(job, schedule, n)


# --- results ----------------------------------------------------------------------------------------
def theorem1(total_param_bytes: int, n: int, m: int, b: int) -> tuple[float, float]:
    """Theorem 1's per-worker memory: (model-distributed pipelining m*Omega/N, mcPipe's bound
    Omega/N + 2(m-1)*sqrt(Omega/N)), in bytes, with Omega counted in float32 elements and each
    stored vector holding the b samples of a microbatch (b = 1 is the paper's statement)."""
    per = total_param_bytes / F32 / n
    return m * per * F32, (per + 2 * (m - 1) * b * math.sqrt(per)) * F32


def _result(job: Job, schedule: str, n: int, rows: list[dict], net: Net, mems: list[Memory], stages: list[Stage],
            bounds, depth: int, trace: list[tuple]) -> RunResult:
    m, c = job.m, job.cfg.channel
    total_bytes = sum(nbytes(w, b) for w, b in job.init)
    pd_bound, mc_bound = theorem1(total_bytes, n, depth, m.microbatch)
    bound = {"pipedream": pd_bound, "mcpipe": mc_bound}.get(schedule, math.nan)
    settings = {"model": job.model, "workers": n, "schedule": schedule}
    memory = []
    for i, (mem, (a, b)) in enumerate(zip(mems, bounds)):
        dev = job.device(i)
        memory.append({
            **settings, "worker": i, "device": dev.name, "device_memory_bytes": dev.memory_bytes,
            "first_layer": a, "last_layer": b - 1, "params_bytes": sum(nbytes(*job.init[j]) for j in range(a, b)),
            "peak_weights_bytes": mem.peak["weights"], "peak_working_bytes": mem.peak["working"],
            "peak_vectors_bytes": mem.peak["vectors"], "peak_optimizer_bytes": mem.peak["optimizer"],
            "peak_activations_bytes": mem.peak["activations"], "peak_state_bytes": mem.peak["state"],
            "peak_total_bytes": mem.peak["total"], "max_weight_versions": mem.max_versions,
            "theorem1_bytes": bound, "exceeds_memory": mem.peak["total"] > dev.memory_bytes,
        })
    curve = [{**settings, **r} for r in rows]
    acc_t = m.accuracy_at_s if m.accuracy_at_s is not None else m.sim_time_s
    at = [r for r in rows if r["sim_time_s"] <= acc_t + 1e-9]
    reached = [r for r in rows if r["accuracy"] >= m.target_accuracy]
    summary = {
        **settings, "seed": job.cfg.seed, "dataset": job.cfg.dataset.name, "microbatch": m.microbatch,
        "depth": depth if schedule in PIPELINES else math.nan, "store": m.store if schedule == "mcpipe" else "",
        "rebuild": m.rebuild if schedule == "mcpipe" else "",
        "partition": m.partition if schedule in PIPELINES else "", "lr": m.lr, "momentum": m.momentum,
        "channel_model": c.model, "channel_mode": c.mode, "channel_ber": c.ber, "bandwidth_bps": c.bandwidth_bps,
        "latency_s": c.latency_s, "sim_time_s": m.sim_time_s,
        "accuracy_at_s": acc_t, "accuracy_at_time": at[-1]["accuracy"], "final_accuracy": rows[-1]["accuracy"],
        "best_accuracy": max(r["accuracy"] for r in rows), "final_loss": rows[-1]["loss"],
        "target_accuracy": m.target_accuracy, "time_to_target_s": reached[0]["sim_time_s"] if reached else math.nan,
        "updates": rows[-1]["updates"], "samples": rows[-1]["samples"], "bytes_sent": net.bytes_sent,
        "retransmissions": net.retransmissions, "bits_flipped": net.bits_flipped,
        "max_peak_total_bytes": max(x["peak_total_bytes"] for x in memory),
        "max_peak_state_bytes": max(x["peak_state_bytes"] for x in memory),
        "max_weight_versions": max(x["max_weight_versions"] for x in memory), "theorem1_bytes": bound,
        "workers_over_memory": sum(bool(x["exceeds_memory"]) for x in memory),
    }
    return RunResult(curve, memory, summary, trace)


def _layer_rows(job: Job) -> list[dict]:
    rows = []
    for layer, p, f, pb in zip(job.layers, job.init, job.layer_flops, job.pair_bytes):
        wb = nbytes(*p)
        rows.append({"model": job.model, "layer": layer.index, "kind": layer.kind, "params": layer.num_params,
                     "weight_bytes": wb, "pair_bytes": pb, "microbatch": job.m.microbatch,
                     "cheaper_to_store": "vectors" if pb < wb else "weights", "train_flops": f})
    return rows


def _plot_curves(curves: pd.DataFrame, out_dir: Path, acc_t: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({(r.model, r.workers) for r in curves[curves.schedule != "local"].itertuples()} or
                    {(r.model, 1) for r in curves.itertuples()})
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
    for ax, (model, n) in zip(axes[0], panels):
        g = curves[(curves.model == model) & (curves.workers == n)]
        for sched, h in g.groupby("schedule", sort=False):
            ax.plot(h.sim_time_s, h.accuracy, label=sched, lw=1.4)
        ax.axvline(acc_t, color="grey", lw=0.6, ls=":")
        ax.set_title(f"{model}, {n} workers")
        ax.set_xlabel("simulated training time (s)")
        ax.set_ylabel("test accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, out_dir / "accuracy_vs_time.png")


def _plot_memory(memory: pd.DataFrame, out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mem = memory[memory.schedule.isin(["pipedream", "mcpipe"])]
    panels = sorted({(r.model, r.workers) for r in mem.itertuples()})
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, (model, n) in zip(axes[0], panels):
        g = mem[(mem.model == model) & (mem.workers == n)]
        for j, sched in enumerate(["pipedream", "mcpipe"]):
            h = g[g.schedule == sched]
            xs = h.worker.to_numpy() + (j - 0.5) * 0.38
            ax.bar(xs, h.peak_state_bytes / 1024, width=0.36, label=f"{sched} (weights+vectors)")
            ax.scatter(xs, h.theorem1_bytes / 1024, marker="_", s=300, color="k",
                       label="theorem 1" if j == 0 else None, zorder=3)
        ax.set_title(f"{model}, {n} workers")
        ax.set_xlabel("worker (stage)")
        ax.set_ylabel("peak KiB")
        ax.set_xticks(range(n))
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, out_dir / "memory.png")


def _run_all(cfg: Config, jobs: list[Job], executor, results: list[RunResult], wall: dict[str, float]) -> None:
    """Every model x pipeline size x schedule (local once per model), appended to `results`.

    Each run is an independent real training with its own SimPy clock, its own copy of the
    model's initial weights and its own link streams (keyed by model, N, schedule): all of them
    go to `executor.map` at once (in parallel on `backend=ray`). The stages of one pipeline run
    are not independent (each waits for its neighbours' activations and errors on the shared
    clock), so a run is the unit."""
    m = cfg.workload
    calls: dict[tuple[str, str, int], tuple[Job, str, int]] = {}  # the local run does not depend on N: once per model
    for job in jobs:
        for n in m.workers:
            for schedule in m.schedules:
                size = 1 if schedule == "local" else n
                calls.setdefault((job.model, schedule, size), (job, schedule, size))
    runs = executor.map(simulate, list(calls.values()))
    done = dict(zip(calls, zip(runs, executor.maps[-1]["call_s"])))  # each run with its wall seconds
    for job in jobs:
        local_shown = False
        for n in m.workers:
            for schedule in m.schedules:
                res, seconds = done[(job.model, schedule, 1 if schedule == "local" else n)]
                if schedule == "local":
                    res, seconds, local_shown = _relabel(res, n), 0.0 if local_shown else seconds, True
                wall[f"{job.model}/{n}/{schedule}"] = seconds
                results.append(res)
                if cfg.progress:
                    s = res.summary
                    print(f"{job.model} N={n} {schedule:13s} acc@{s['accuracy_at_s']:g}s={s['accuracy_at_time']:.3f} "
                          f"t_target={s['time_to_target_s']:.3g}s peak={s['max_peak_state_bytes']}B", flush=True)


def run(cfg: Config, out_dir: Path | str, *, in_sweep: bool = False) -> pd.DataFrame:
    """Train every model under every schedule on every pipeline size; write curves.csv,
    memory.csv, layers.csv, summary.csv (and comparison.csv outside a sweep), the plots, and
    trace.csv (the event order of every run). Returns the summary rows."""
    out_dir = Path(out_dir)
    jobs = prepare(cfg)
    m = cfg.workload
    results: list[RunResult] = []
    wall: dict[str, float] = {}
    with make_executor(cfg) as executor:  # on `cfg.backend`, each call on `torch_threads` threads
        _run_all(cfg, jobs, executor, results, wall)
    curves = frame(r for res in results for r in res.curve)
    memory = frame(r for res in results for r in res.memory)
    summary = frame(res.summary for res in results)
    trace = frame({"model": res.summary["model"], "workers": res.summary["workers"], "schedule": res.summary["schedule"],
                   "sim_time_s": t, "worker": w, "op": op, "microbatch": k, "version": v}
                  for res in results for (t, w, op, k, v) in res.trace)
    write_csvs(out_dir, {"curves.csv": curves, "memory.csv": memory, "trace.csv": trace, "summary.csv": summary,
                         "layers.csv": frame(r for job in jobs for r in _layer_rows(job))})
    write_json({**executor.timings(), "wall_s_per_run": wall}, out_dir / "wallclock.json")
    if not in_sweep:
        write_csv(summary, out_dir / "comparison.csv")
    acc_t = m.accuracy_at_s if m.accuracy_at_s is not None else m.sim_time_s
    if cfg.plots:
        _plot_curves(curves, out_dir, acc_t)
        _plot_memory(memory, out_dir)
    return summary


def _relabel(res: RunResult, n: int) -> RunResult:
    """The local run (one device, whatever N) shown beside the N-worker runs."""
    return RunResult([{**r, "workers": n} for r in res.curve], [{**r, "workers": n} for r in res.memory],
                     {**res.summary, "workers": n}, res.trace)

"""NAIR job: head/tail split inference over a narrow, lossy link (`python -m sim +experiment=nair`).

What runs for real: the original MobileNetV2-style model's training, NAIR's re-tuning (and its
table III ablation), CLIO's single- and multi-tail retraining, the heads' and tails' forward
passes, the payload bytes of every slice (float32 or quantised), JPEG encoding of the raw
input with Pillow. What the simulation decides: for each test image, the SimPy processes of the
IoT device (head compute at its FLOP rate, then slice after slice on its radio) and of the
receiver on the edge server, which takes what has arrived by each latency budget; the channel's
packet timing, retransmissions and bit errors come from `channels.transfer`, and the flipped
bits are applied to the real payload bytes before the tail decodes them.

Reports (in the run folder): table2.csv (one row per method, one column per latency budget,
and the overall accuracy), latency.csv (long form, with what was delivered and its cost),
ablation.csv (table III), corruption.csv (figure 5), importance.csv (figure 6), cost.csv (tail
parameters, head compute, transfer time and energy), summary.csv (table II with the settings, one
row per method; a sweep's comparison.csv gathers them), comparison.csv (outside a sweep), plots,
wallclock.json.
"""
from __future__ import annotations

import copy
import io
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import simpy
import torch
from torch import nn

from channels import Link, flip_bits, transfer
from devices import CATALOGUE, DeviceProfile
from experiments.common.cache import Training, train_cached
from experiments.common.data import Dataset, load_dataset
from experiments.nair.model import BLOCKS, SplitNet, Tail, build_splitnet, count_parameters, narrow_tail
from experiments.nair.slicing import FLOAT_BITS, SlicePlan, assemble, decode_slice, encode_slices, importance_order, unit_importance
from experiments.nair.training import TrainSettings, accuracy, retune_nair, train_clio, train_original
from sim.backends import make_executor
from sim.config import Config, ConfigError
from sim.nair.settings import NUM_STAGES, NairSettings, require
from sim.net import build_link
from sim.meter import WorkMeter
from sim.report import frame, save_figure, write_csv, write_csvs, write_json
from sim.seeding import stream

__all__ = ["METHODS", "NUM_STAGES", "run"]

NUM_STAGES = len(BLOCKS) + 2  # stem, the bottleneck blocks, the last 1x1 convolution
# table rows, in order; the NAIR ablation variants are table III's rows
NAIR_VARIANTS = {"nair_neither": (False, False), "nair_penalty": (False, True), "nair": (True, True)}  # (weight, penalty)
SLICE_METHODS = ("original", "clio_mt", "clio_st", "nair_neither", "nair_penalty", "nair")
RAW_METHODS = ("raw_quant", "raw_jpeg")
METHODS = SLICE_METHODS + RAW_METHODS
JPEG_QUALITIES = (95, 90, 85, 75, 65, 50, 40, 30, 20, 15, 10, 5, 1)


def _say(cfg: Config, text: str) -> None:
    if cfg.progress:
        print(f"nair: {text}", file=sys.stderr, flush=True)


# --- data and models ---------------------------------------------------------------------------
def _load(cfg: Config) -> Dataset:
    d = cfg.dataset
    try:
        data = load_dataset(d.name, path=d.path, seed=cfg.seed, num_samples=d.num_samples)
    except (FileNotFoundError, ValueError) as exc:
        raise ConfigError(str(exc).splitlines()[0]) from None
    n = cfg.workload
    if n.train_samples is None and n.test_samples is None:
        return data
    tr = slice(0, n.train_samples)
    te = slice(0, n.test_samples)
    return Dataset(data.name, data.x_train[tr], data.y_train[tr], data.x_test[te], data.y_test[te], data.num_classes)


@dataclass
class Models:
    original: SplitNet
    nets: dict[str, SplitNet]  # method -> the network whose head runs on the device
    clio_tails: list[Tail]  # CLIO multi-tail: one tail per width (j units)
    order: np.ndarray  # the index vector I_k from the original model's importances
    meta: dict = field(default_factory=dict)


def _settings(n: NairSettings, seed: int, retune: bool) -> TrainSettings:
    if retune:
        return TrainSettings(n.retune_epochs, n.retune_lr, n.retune_batch_size, weight_decay=n.weight_decay, seed=seed)
    return TrainSettings(n.epochs, n.lr, n.batch_size, weight_decay=n.weight_decay, seed=seed)


def _train_clio_bundle(bundle: nn.ModuleDict, *args, **kwargs) -> dict:
    """CLIO multi-tail on a bundle of the network and its tails (one model for the cache)."""
    return train_clio(bundle["net"], *args, tails=list(bundle["tails"]), **kwargs)


def _build_models(cfg: Config, data: Dataset, executor) -> Models:
    """Every model, trained (or loaded from the model cache) on `executor`: the original model
    first (the others start from its weights and its unit importances), then NAIR's three
    re-tunings (table III's variants) and CLIO's single- and multi-tail retraining at once,
    since they are independent of one another (in parallel on `backend=ray`)."""
    n, k = cfg.workload, cfg.workload.split
    c_in = data.input_shape[0]
    net_seed = int(stream(cfg.seed, "nair-model").integers(2**31))
    train_seed = int(stream(cfg.seed, "nair-train").integers(2**31))
    base_key = {"dataset": data.name, "n_train": len(data.y_train), "seed": cfg.seed, "input_size": n.input_size,
                "blocks": BLOCKS, "epochs": n.epochs, "lr": n.lr, "batch_size": n.batch_size, "wd": n.weight_decay}
    original = build_splitnet(c_in, data.num_classes, n.input_size, seed=net_seed)
    _say(cfg, "original model")
    xy = (data.x_train, data.y_train)
    [(meta, hit)] = train_cached(executor, cfg.cache_dir, [Training(
        "nair-original", base_key, original, train_original, (*xy, _settings(n, train_seed, False)), seed=train_seed)])
    original.eval()
    conv, bn = original.split_layer(k)
    order = importance_order(unit_importance(conv, bn, n.channels_per_unit, n.fold_bn))
    retune_key = {**base_key, "split": k, "cpu": n.channels_per_unit, "fold_bn": n.fold_bn, "retune_epochs": n.retune_epochs,
                  "retune_lr": n.retune_lr, "retune_batch_size": n.retune_batch_size}
    trainings = {}
    for name, (use_weight, use_penalty) in NAIR_VARIANTS.items():
        key = {**retune_key, "variant": name, "w_non": n.w_non if use_weight else None,
               "penalty_weight": n.penalty_weight if use_penalty else None}
        settings = _settings(n, train_seed + 1, True)
        trainings[name] = Training("nair-retuned", key, copy.deepcopy(original), retune_nair,
                                   (k, order, n.channels_per_unit, *xy, settings),
                                   dict(w_non=n.w_non, penalty_weight=n.penalty_weight, use_weight=use_weight,
                                        use_penalty=use_penalty, fold_bn=n.fold_bn), seed=settings.seed)
    clio_key = {**retune_key, "clio_training": n.clio_training, "head_emphasis": n.clio_head_emphasis}
    clio = dict(head_emphasis=n.clio_head_emphasis, mode=n.clio_training)
    settings = _settings(n, train_seed + 2, True)
    trainings["clio_st"] = Training("nair-clio-st", clio_key, copy.deepcopy(original), train_clio,
                                    (k, n.channels_per_unit, *xy, settings), clio, seed=settings.seed)
    mt = copy.deepcopy(original)
    units = original.channels(k) // n.channels_per_unit
    with torch.random.fork_rng(devices=[]):  # the re-initialised first layers of the narrow tails
        torch.default_generator.manual_seed(net_seed + 1)
        tails = [narrow_tail(mt, k, (j + 1) * n.channels_per_unit) for j in range(units)]
    settings = _settings(n, train_seed + 3, True)
    trainings["clio_mt"] = Training("nair-clio-mt", clio_key, nn.ModuleDict({"net": mt, "tails": nn.ModuleList(tails)}),
                                    _train_clio_bundle, (k, n.channels_per_unit, *xy, settings), clio, seed=settings.seed)
    _say(cfg, f"re-tuning {', '.join(NAIR_VARIANTS)}; CLIO single and multi-tail ({len(trainings)} models)")
    done = train_cached(executor, cfg.cache_dir, list(trainings.values()))
    nets: dict[str, SplitNet] = {"original": original}
    info = {"original": {**meta, "cache_hit": hit}}
    for (name, t), (m, hit) in zip(trainings.items(), done):
        t.model.eval()
        nets[name], info[name] = (t.model["net"] if name == "clio_mt" else t.model), {**m, "cache_hit": hit}
    tails = list(trainings["clio_mt"].model["tails"])
    return Models(original, nets, tails, order, info)


# --- cost of the real computation ----------------------------------------------------------------
def _work(module: nn.Module, x: torch.Tensor) -> tuple[int, int]:
    """(FLOPs, peak bytes: parameters + activations) of one inference, by FlopCounterMode."""
    meter = WorkMeter()
    with meter, torch.no_grad():
        module(x)
    return meter.flops, meter.peak_bytes


# --- the link: SimPy processes -----------------------------------------------------------------------
@dataclass
class SliceEvent:
    """One slice sent during one episode (one inference)."""

    episode: int
    slice: int
    start_s: float  # relative to the episode's start (the sensor reading)
    end_s: float  # end of its airtime
    arrival_s: float  # when its last bit reached the receiver
    delivered: bool  # every packet got through (arq gives up after max_attempts)
    flips: np.ndarray  # payload bit positions flipped (raw mode)
    attempts: int


def _sender(env: simpy.Environment, radio: simpy.Resource, link: Link, sizes: Sequence[int], stop_s: float,
            rng: np.random.Generator, mailbox: simpy.Store, log: list, episode: int, t0: float):
    """The device's radio sends the slices back to back until they are all out or the last
    budget has passed; each slice reaches the mailbox one link latency after its airtime."""
    with radio.request() as req:
        yield req
        for s, size in enumerate(sizes):
            if env.now >= stop_s:
                break
            out = transfer(link, int(size), rng)
            start = env.now
            yield env.timeout(out.time_s - link.latency_s)
            ev = SliceEvent(episode, s, start - t0, env.now - t0, env.now - t0 + link.latency_s, out.delivered,
                            out.flip_positions, out.attempts)
            log.append(ev)
            if out.delivered:
                env.process(_propagate(env, link.latency_s, mailbox, ev))


def _propagate(env: simpy.Environment, latency_s: float, mailbox: simpy.Store, ev: SliceEvent):
    yield env.timeout(latency_s)
    yield mailbox.put(ev)


def _episode(env: simpy.Environment, radio: simpy.Resource, link: Link, head_s: float, sizes: Sequence[int],
             budgets: Sequence[float], rng: np.random.Generator, log: list, got: dict, episode: int):
    """One inference: the head computes, the radio sends, the receiver takes what has arrived
    by each budget (`got[(episode, b)]` = slice indices)."""
    t0 = env.now
    yield env.timeout(head_s)
    mailbox = simpy.Store(env)
    sender = env.process(_sender(env, radio, link, sizes, t0 + max(budgets), rng, mailbox, log, episode, t0))
    arrived: list[int] = []
    for b, budget in sorted(enumerate(budgets), key=lambda t: t[1]):
        while True:
            left = t0 + budget - env.now
            if left < 0:
                break
            get = mailbox.get()
            res = yield get | env.timeout(left)
            if get not in res:
                get.cancel()
                break
            arrived.append(res[get].slice)
        got[(episode, b)] = list(arrived)
    yield sender


def simulate_link(link: Link, episodes: Sequence[tuple[float, Sequence[int], Sequence[float]]],
                  rng_for: Callable[[int], np.random.Generator]) -> tuple[list[SliceEvent], dict]:
    """Play `episodes` (head seconds, slice sizes in bytes, budgets) one after another on one
    device's radio; returns every slice sent and, per (episode, budget index), the slices
    the receiver had by that budget."""
    env = simpy.Environment()
    radio = simpy.Resource(env, capacity=1)
    log: list[SliceEvent] = []
    got: dict = {}

    def driver():
        for e, (head_s, sizes, budgets) in enumerate(episodes):
            yield env.process(_episode(env, radio, link, head_s, sizes, budgets, rng_for(e), log, got, e))

    env.process(driver())
    env.run()
    return log, got


def _airtime_s(link: Link, size: int) -> float:
    """Error-free airtime of one message of `size` bytes (packets and headers)."""
    packets = -(-int(size) // link.packet_bytes)
    return (8 * size + 8 * link.header_bytes * packets) / link.bandwidth_bps


# --- receiving and inference --------------------------------------------------------------------
@dataclass
class MethodResult:
    rows: list[dict]  # per budget
    overall: float
    payload_bytes: float  # everything, error-free


def _transmit_s(events: list[SliceEvent], budget: float) -> float:
    return sum(max(0.0, min(e.end_s, budget) - e.start_s) for e in events)


def _tallies(budgets: int, images: int) -> tuple[np.ndarray, ...]:
    """Per (budget, image): correct, units received, bytes received, transmit seconds, bits flipped."""
    return (np.zeros((budgets, images), dtype=bool), *(np.zeros((budgets, images)) for _ in range(4)))


def _budget_rows(method: str, budgets: Sequence[float], correct: np.ndarray, units: np.ndarray, delivered_bytes: np.ndarray,
                 tx_s: np.ndarray, flipped: np.ndarray, head_s: float, device: DeviceProfile) -> list[dict]:
    rows = []
    for b, budget in enumerate(budgets):
        rows.append({
            "method": method, "latency_budget_s": budget, "accuracy": float(correct[b].mean()),
            "mean_units_received": float(units[b].mean()), "mean_bytes_received": float(delivered_bytes[b].mean()),
            "mean_transmit_s": float(tx_s[b].mean()), "mean_head_compute_s": head_s,
            "mean_device_energy_j": float(device.energy_j("compute", head_s) + device.transmit_w * tx_s[b].mean()),
            "mean_bits_flipped": float(flipped[b].mean()),
        })
    return rows


def _run_slices(cfg: Config, method: str, net: SplitNet, tails: list[Tail] | None, order: np.ndarray, send_index: bool,
                x: torch.Tensor, y: torch.Tensor, link: Link, head_s: float, device: DeviceProfile) -> MethodResult:
    n, k = cfg.workload, cfg.workload.split
    budgets = list(n.latencies_s)
    with torch.no_grad():
        o = net.forward_to(x, k)
    plan = SlicePlan(o.shape[1:], n.channels_per_unit, n.bits_per_element, order, send_index)
    payload = encode_slices(o, plan)  # per slice (N, bytes)
    sizes = plan.slice_sizes()
    count = len(y)
    log, got = simulate_link(link, [(head_s, sizes, budgets)] * count,
                             lambda e: stream(cfg.seed, "nair-link", method, e))
    by_episode: dict[int, dict[int, SliceEvent]] = {}
    for ev in log:
        by_episode.setdefault(ev.episode, {})[ev.slice] = ev
    # decode each delivered slice once (its bit errors applied to its real bytes)
    decoded: dict[tuple[int, int], tuple[np.ndarray | None, np.ndarray]] = {}
    for i, evs in by_episode.items():
        for s, ev in evs.items():
            if not ev.delivered:
                continue
            buf = payload[s][i].copy()
            if ev.flips.size:
                flip_bits(buf, ev.flips)
            decoded[(i, s)] = decode_slice(buf, plan, first=s == 0)
    nb = len(budgets)
    correct, units, got_bytes, tx, flipped = _tallies(nb, count)
    shape = tuple(o.shape[1:])
    tail = net.tail(k)
    for b, budget in enumerate(budgets):
        batch = torch.zeros((count, *shape))
        prefix = np.zeros(count, dtype=np.int64)
        for i in range(count):
            arrived = got.get((i, b), [])
            evs = by_episode.get(i, {})
            tx[b, i] = _transmit_s(list(evs.values()), budget)
            flipped[b, i] = sum(evs[s].flips.size for s in arrived)
            got_bytes[b, i] = sum(sizes[s] for s in arrived)
            received: dict[int, np.ndarray] = {}
            if send_index:  # positions from the index vector of the first slice (lost with it)
                index = decoded[(i, 0)][0] if 0 in arrived else None
                if index is not None:
                    for s in arrived:
                        received[int(index[s])] = decoded[(i, s)][1]
            else:  # native order: slice s holds unit order[s]
                for s in arrived:
                    received[int(plan.order[s])] = decoded[(i, s)][1]
            received = {u: v for u, v in received.items() if 0 <= u < plan.units}
            units[b, i] = len(received)
            while prefix[i] < plan.units and int(prefix[i]) in received:
                prefix[i] += 1
            batch[i] = assemble(received, shape, n.channels_per_unit)
        with torch.no_grad():
            if tails is None:
                pred = tail(batch).argmax(1)
            else:  # CLIO multi-tail: the tail for the received prefix (nothing: the narrowest, on zeros)
                pred = torch.zeros(count, dtype=torch.long)
                for m in np.unique(prefix):
                    idx = torch.as_tensor(np.flatnonzero(prefix == m))
                    width = max(int(m), 1) * n.channels_per_unit
                    pred[idx] = tails[max(int(m), 1) - 1](batch[idx, :width]).argmax(1)
        correct[b] = (pred == y).numpy()
    with torch.no_grad():
        full = tails[-1] if tails is not None else tail
        overall = accuracy(full, o, y)
    rows = _budget_rows(method, budgets, correct, units, got_bytes, tx, flipped, head_s, device)
    return MethodResult(rows, overall, float(sum(sizes)))


def _quant_bytes(pixels: int, bits: int) -> int:
    return (pixels * bits + 7) // 8


def _jpeg(img: np.ndarray, quality: int) -> bytes:
    from PIL import Image

    arr = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
    pil = Image.fromarray(arr[0] if arr.shape[0] == 1 else np.moveaxis(arr, 0, -1))
    buf = io.BytesIO()
    pil.save(buf, format="JPEG", quality=int(quality))
    return buf.getvalue()


def _unjpeg(data: bytes, shape: tuple[int, int, int]) -> np.ndarray:
    """Decode a received JPEG; one the errors made undecodable (or misshapen) gives zeros."""
    from PIL import Image

    c, h, w = shape
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            arr = np.asarray(im.convert("L" if c == 1 else "RGB"), dtype=np.float32) / 255.0
    except Exception:  # noqa: BLE001 - a corrupted stream can fail in many ways inside Pillow
        return np.zeros(shape, dtype=np.float32)
    arr = arr[None] if c == 1 else np.moveaxis(arr, -1, 0)
    return arr if arr.shape == shape else np.zeros(shape, dtype=np.float32)


def _run_raw(cfg: Config, method: str, net: SplitNet, x: torch.Tensor, y: torch.Tensor, link: Link,
             device: DeviceProfile) -> MethodResult:
    """The raw sensor image, compressed to fit each budget: plain quantisation (the most bits
    per pixel, 1..8, whose airtime fits) or JPEG (the highest quality that fits); one message
    per inference and budget, decoded with its bit errors, then the whole original model."""
    budgets = list(cfg.workload.latencies_s)
    shape = tuple(int(s) for s in x.shape[1:])
    pixels = int(np.prod(shape))
    imgs = x.numpy()
    count = len(y)
    messages: list[list[bytes]] = []  # [budget][image]
    for budget in budgets:
        room = budget - link.latency_s
        row = []
        for i in range(count):
            if method == "raw_quant":
                bits = next((b for b in range(8, 0, -1) if _airtime_s(link, _quant_bytes(pixels, b)) <= room), 0)
                if bits == 0:
                    row.append(b"")
                    continue
                levels = (1 << bits) - 1
                codes = np.clip(np.rint(imgs[i].reshape(-1) * levels), 0, levels).astype(np.uint32)
                planes = ((codes[:, None] >> np.arange(bits - 1, -1, -1, dtype=np.uint32)) & 1).astype(np.uint8)
                row.append(bytes([bits]) + np.packbits(planes.reshape(-1)).tobytes())
            else:
                fits = b""
                for q in JPEG_QUALITIES:
                    data = _jpeg(imgs[i], q)
                    if _airtime_s(link, len(data)) <= room:
                        fits = data
                        break
                row.append(fits)
        messages.append(row)
    episodes, keys = [], []
    for b, budget in enumerate(budgets):
        for i in range(count):
            sizes = [len(messages[b][i])] if messages[b][i] else []
            episodes.append((0.0, sizes, [budget]))
            keys.append((b, i))
    log, got = simulate_link(link, episodes, lambda e: stream(cfg.seed, "nair-link", method, *keys[e]))
    events = {ev.episode: ev for ev in log}
    nb = len(budgets)
    correct, units, got_bytes, tx, flipped = _tallies(nb, count)
    for b in range(nb):
        batch = np.zeros((count, *shape), dtype=np.float32)
        for i in range(count):
            e = b * count + i
            ev = events.get(e)
            tx[b, i] = _transmit_s([ev], budgets[b]) if ev is not None else 0.0
            if ev is None or 0 not in got.get((e, 0), []):
                continue
            buf = np.frombuffer(messages[b][i], dtype=np.uint8).copy()
            if ev.flips.size:
                flip_bits(buf, ev.flips)
            units[b, i], got_bytes[b, i], flipped[b, i] = 1, buf.size, ev.flips.size
            if method == "raw_quant":
                bits = int(buf[0])
                if 1 <= bits <= 8:
                    flat = np.unpackbits(buf[1:])[: pixels * bits].reshape(pixels, bits).astype(np.uint32)
                    codes = (flat << np.arange(bits - 1, -1, -1, dtype=np.uint32)).sum(1)
                    batch[i] = (codes / ((1 << bits) - 1)).reshape(shape)
            else:
                batch[i] = _unjpeg(buf.tobytes(), shape)
        with torch.no_grad():
            correct[b] = (net(torch.from_numpy(batch)).argmax(1) == y).numpy()
    overall = accuracy(net, x, y)
    full = float(_quant_bytes(pixels, 8)) if method == "raw_quant" else float(np.mean([len(_jpeg(im, 95)) for im in imgs]))
    return MethodResult(_budget_rows(method, budgets, correct, units, got_bytes, tx, flipped, 0.0, device), overall, full)


def _evaluate(cfg: Config, method: str, net: SplitNet, tails: list[Tail] | None, order: np.ndarray, x: torch.Tensor,
              y: torch.Tensor, link: Link, head_s: float, device: DeviceProfile) -> MethodResult:
    """One method's simulated link and real inference (one call of `executor.map`)."""
    if method in RAW_METHODS:
        return _run_raw(cfg, method, net, x, y, link, device)
    return _run_slices(cfg, method, net, tails, order, method.startswith("nair"), x, y, link, head_s, device)


# --- figure 5 ------------------------------------------------------------------------------------
def _corruption(cfg: Config, net: SplitNet, x: torch.Tensor, y: torch.Tensor) -> pd.DataFrame:
    """Accuracy of the original model when a fraction of the elements sent at each split
    (0 = the raw image) is corrupted: erased to 0, or replaced by uniform values in the
    tensor's range (`corruption_mode`)."""
    n = cfg.workload
    rows = []
    with torch.no_grad():
        for k in range(NUM_STAGES + 1):
            o = net.forward_to(x, k)
            flat = o.reshape(len(o), -1)
            rows.append({"split": k, "layer": "input" if k == 0 else f"stage{k}", "elements": flat.shape[1],
                         "corruption_fraction": 0.0, "accuracy": accuracy(lambda z: net.forward_from(z, k), o, y)})
            for f in n.corruption_fractions:
                g = torch.Generator().manual_seed(int(stream(cfg.seed, "nair-corrupt", k, repr(f)).integers(2**62)))
                hit = torch.rand(flat.shape, generator=g) < f
                if n.corruption_mode == "erase":
                    bad = torch.zeros_like(flat)
                else:
                    lo, hi = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
                    bad = lo + (hi - lo) * torch.rand(flat.shape, generator=g)
                z = torch.where(hit, bad, flat).reshape(o.shape)
                rows.append({"split": k, "layer": "input" if k == 0 else f"stage{k}", "elements": flat.shape[1],
                             "corruption_fraction": f, "accuracy": accuracy(lambda t: net.forward_from(t, k), z, y)})
    return pd.DataFrame(rows)


# --- reports ---------------------------------------------------------------------------------------
def _col(budget: float) -> str:
    return f"accuracy_at_{budget:g}_s"


def _plots(out_dir: Path, latency: pd.DataFrame, corruption: pd.DataFrame, importance: pd.DataFrame, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def finish(ax, name: str, xlabel: str, ylabel: str, plot_title: str) -> None:
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(plot_title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        ax.figure.tight_layout()
        save_figure(ax.figure, out_dir / name)

    _, ax = plt.subplots(figsize=(7, 4.5))
    for method, g in latency.groupby("method", sort=False):
        ax.plot(g["latency_budget_s"], g["accuracy"], marker="o", label=method)
    finish(ax, "accuracy_vs_latency.png", "latency budget (s)", "test accuracy", title)

    _, ax = plt.subplots(figsize=(7, 4.5))
    for layer, g in corruption.groupby("layer", sort=False):
        ax.plot(g["corruption_fraction"], g["accuracy"], marker=".", label=layer)
    finish(ax, "accuracy_vs_corruption.png", "fraction of corrupted elements", "test accuracy (original model)",
           "figure 5: errors at every split")

    _, ax = plt.subplots(figsize=(7, 4.5))
    for colname in [c for c in importance.columns if c.startswith("share_")]:
        ax.plot(importance["rank"], np.sort(importance[colname].to_numpy())[::-1], marker=".", label=colname[6:])
    finish(ax, "importance.png", "unit rank (descending importance)", "share of the split layer's importance",
           "figure 6: importance distribution")


def run(cfg: Config, out_dir: Path | str, *, in_sweep: bool = False) -> pd.DataFrame:
    """Run the NAIR job and write its reports under `out_dir`; returns the summary rows."""
    return _run(cfg, Path(out_dir), in_sweep)


def _run(cfg: Config, out_dir: Path, in_sweep: bool) -> pd.DataFrame:
    wall0 = time.perf_counter()
    n, k = cfg.workload, cfg.workload.split
    try:
        link = build_link(cfg.channel)
    except ValueError as exc:
        raise ConfigError(str(exc).splitlines()[0]) from None
    data = _load(cfg)
    probe = build_splitnet(data.input_shape[0], data.num_classes, n.input_size)
    channels = probe.channels(k)
    require(channels % n.channels_per_unit == 0, "channels_per_unit", n.channels_per_unit,
             f"must divide the {channels} channels at split {k}")
    require(channels // n.channels_per_unit <= 256, "channels_per_unit", n.channels_per_unit, "at most 256 units per split")
    device, server = CATALOGUE[n.device], CATALOGUE[n.server]
    head_flops, head_bytes = _work(probe.head(k), data.x_test[:1])
    if head_bytes > device.memory_bytes:
        raise ConfigError(f"nair.split={k}: the head needs {head_bytes} bytes, more than nair.device={n.device!r} has "
                          f"({device.memory_bytes}); allowed: an earlier split or a larger device")

    walls = {}
    x, y = data.x_test, data.y_test
    head_s = device.compute_time_s(head_flops)
    native = np.arange(channels // n.channels_per_unit)
    with make_executor(cfg) as executor:  # on `cfg.backend`; Ray starts at the first call with work
        t = time.perf_counter()
        models = _build_models(cfg, data, executor)
        walls["training_s"] = round(time.perf_counter() - t, 3)
        t = time.perf_counter()
        # every method's link and inference at once: each has its own link streams and models
        _say(cfg, f"link and inference: {', '.join(METHODS)}")
        calls = [(cfg, method, models.original, None, native, x, y, link, head_s, device) if method in RAW_METHODS else
                 (cfg, method, models.nets[method], models.clio_tails if method == "clio_mt" else None,
                  models.order if method.startswith("nair") else native, x, y, link, head_s, device) for method in METHODS]
        results: dict[str, MethodResult] = dict(zip(METHODS, executor.map(_evaluate, calls)))
        walls["link_and_inference_s"] = round(time.perf_counter() - t, 3)
    _say(cfg, "figure 5")
    corruption = _corruption(cfg, models.original, x, y)

    # cost: tails, head compute, transfer
    tail_flops, _ = _work(models.original.tail(k), models.original.forward_to(x[:1], k).detach())
    full_flops, _ = _work(models.original, x[:1])
    cost_rows = []
    for method in METHODS:
        res = results[method]
        raw = method in RAW_METHODS
        if method == "clio_mt":
            tail_params, tails_n = sum(count_parameters(t) for t in models.clio_tails), len(models.clio_tails)
        elif raw:
            tail_params, tails_n = count_parameters(models.original), 1
        else:
            tail_params, tails_n = count_parameters(models.nets[method].tail(k)), 1
        airtime = _airtime_s(link, int(round(res.payload_bytes))) if raw else sum(
            _airtime_s(link, s) for s in SlicePlan(models.original.forward_to(x[:1], k).shape[1:], n.channels_per_unit,
                                                   n.bits_per_element, native, method.startswith("nair")).slice_sizes())
        flops = 0 if raw else head_flops
        cost_rows.append({
            "method": method, "num_tails": tails_n, "tail_params": tail_params,
            "head_params": 0 if raw else count_parameters(models.nets[method].head(k)),
            "head_flops": flops, "head_compute_s": device.compute_time_s(flops),
            "head_energy_j": device.energy_j("compute", device.compute_time_s(flops)),
            "tail_flops": full_flops if raw else tail_flops, "tail_compute_s": server.compute_time_s(full_flops if raw else tail_flops),
            "payload_bytes": res.payload_bytes, "transfer_s": airtime + link.latency_s,
            "transfer_energy_j": device.energy_j("transmit", airtime),
        })
    cost = pd.DataFrame(cost_rows)

    latency = pd.concat([frame(results[m].rows) for m in METHODS], ignore_index=True)
    table = latency.pivot(index="method", columns="latency_budget_s", values="accuracy").reindex(list(METHODS))
    table.columns = [_col(b) for b in table.columns]
    table = table.reset_index()
    table["accuracy_overall"] = [results[m].overall for m in METHODS]
    low = _col(min(n.latencies_s))
    ablation = pd.DataFrame([{"variant": v, "penalty": up, "importance_weight": uw,
                              "low_latency_s": min(n.latencies_s),
                              "low_latency_accuracy": float(table.loc[table.method == v, low].iloc[0]),
                              "overall_accuracy": results[v].overall} for v, (uw, up) in NAIR_VARIANTS.items()])
    imp_rows = {"unit": np.arange(len(native)), "rank": np.arange(1, len(native) + 1),
                "sent_position_nair": np.argsort(models.order)}
    for name in ("original", *NAIR_VARIANTS, "clio_st"):
        conv, bn = models.nets[name].split_layer(k)
        with torch.no_grad():
            r = unit_importance(conv, bn, n.channels_per_unit, n.fold_bn).numpy().astype(np.float64)
        imp_rows[f"importance_{name}"] = r
        imp_rows[f"share_{name}"] = r / r.sum()
    importance = pd.DataFrame(imp_rows)

    c = cfg.channel
    settings = {"seed": cfg.seed, "dataset": data.name, "split": k, "channels_per_unit": n.channels_per_unit,
                "bits_per_element": n.bits_per_element, "input_size": n.input_size, "device": n.device,
                "channel_model": c.model, "channel_mode": c.mode, "channel_ber": c.ber, "bandwidth_bps": c.bandwidth_bps,
                "latency_s": c.latency_s, "w_non": n.w_non, "penalty_weight": n.penalty_weight,
                "retune_epochs": n.retune_epochs}
    summary = table.assign(**settings)
    summary = summary[["method", *settings, *[col for col in table.columns if col != "method"]]]
    summary = summary.merge(cost[["method", "num_tails", "tail_params", "head_flops", "payload_bytes", "transfer_s"]],
                            on="method", how="left")

    write_csvs(out_dir, {"table2.csv": table, "latency.csv": latency, "ablation.csv": ablation, "corruption.csv": corruption,
                         "importance.csv": importance, "cost.csv": cost, "summary.csv": summary})
    if not in_sweep:
        write_csv(summary, out_dir / "comparison.csv")
    if cfg.plots:
        _plots(out_dir, latency, corruption, importance,
               f"{data.name}, split {k}, {c.bandwidth_bps / 1e3:g} kbit/s, BER {c.ber:g}")
    walls["total_s"] = round(time.perf_counter() - wall0, 3)
    write_json({**executor.timings(), "wall_s": walls, "training": models.meta}, out_dir / "wallclock.json")
    _say(cfg, f"done: {out_dir}")
    return summary

"""One method of a NAIR job end to end: its link on the clock and its real inference.

`evaluate` is one call of `executor.map` (each method has its own link streams, models and
simulated system: one network, one clock, `timeline.nair_network`; so the methods run in
parallel on `backend=ray`). A slice method sends O_k as slices (`timeline`)
and the server classifies from what arrived by each budget (`experiments.nair.receive`); a
raw-input method sends the image compressed to fit each budget (`experiments.nair.codecs`)
through the whole original model. Both give, per budget, the accuracy and what the device
spent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from channels import Link, flip_bits
from devices import DeviceProfile
from experiments.common.metrics import accuracy
from experiments.common.torchdev import device_of
from experiments.nair.codecs import RAW_METHODS, decode_raw, encode_raw, full_payload_bytes
from experiments.nair.model import SplitNet, Tail
from experiments.nair.receive import classify, decode_delivered, head_payload, received_units
from sim.config import Config
from sim.nair.timeline import airtime_s, events_by_episode, nair_network, simulate_link, transmit_s
from sim.seeding import stream

__all__ = ["METHODS", "RAW_METHODS", "SLICE_METHODS", "MethodResult", "evaluate"]

# table rows, in order; the NAIR ablation variants are table III's rows
SLICE_METHODS = ("original", "clio_mt", "clio_st", "nair_neither", "nair_penalty", "nair")
METHODS = SLICE_METHODS + RAW_METHODS


@dataclass
class MethodResult:
    """One method's figures over the latency budgets, and its first episodes."""

    rows: list[dict]  # per budget
    overall: float  # accuracy with every unit (or the whole image) and no errors
    payload_bytes: float  # everything, error-free
    timeline: list[dict] = field(default_factory=list)  # timeline.csv rows: the first episodes


class Tally:
    """Per (budget, image): prediction right, units received, bytes received, transmit seconds,
    bits flipped; `rows` averages them over the images, one row per budget."""

    def __init__(self, budgets: int, images: int):
        self.correct = np.zeros((budgets, images), dtype=bool)
        self.units, self.got_bytes, self.tx_s, self.flipped = (np.zeros((budgets, images)) for _ in range(4))

    def rows(self, method: str, budgets: Sequence[float], head_s: float, device: DeviceProfile) -> list[dict]:
        """One row of latency.csv per budget; the device's energy: head compute, then the radio."""
        return [
            {
                "method": method,
                "latency_budget_s": budget,
                "accuracy": float(self.correct[b].mean()),
                "mean_units_received": float(self.units[b].mean()),
                "mean_bytes_received": float(self.got_bytes[b].mean()),
                "mean_transmit_s": float(self.tx_s[b].mean()),
                "mean_head_compute_s": head_s,
                "mean_device_energy_j": float(
                    device.energy_j("compute", head_s) + device.energy_j("transmit", self.tx_s[b].mean())
                ),
                "mean_bits_flipped": float(self.flipped[b].mean()),
            }
            for b, budget in enumerate(budgets)
        ]


def _run_slices(
    cfg: Config,
    method: str,
    net: SplitNet,
    tails: list[Tail] | None,
    order: np.ndarray,
    send_index: bool,
    x: torch.Tensor,
    y: torch.Tensor,
    head_s: float,
    device: DeviceProfile,
    server: DeviceProfile,
    tail_flops: int,
) -> MethodResult:
    """A slice method: the head's O_k of every image in slices over the simulated link, each
    delivered slice decoded with its bit errors, the tail (or CLIO's tails) on what arrived."""
    n, k = cfg.workload, cfg.workload.split
    budgets = list(n.latencies_s)
    o, plan, payload = head_payload(net, x, k, n.channels_per_unit, n.bits_per_element, order, send_index)
    sizes = plan.slice_sizes()
    count = len(y)
    run = simulate_link(
        *nair_network(cfg, device, server),
        [(head_s, sizes, budgets)] * count,
        lambda e: stream(cfg.seed, "nair-link", method, e),
        server_flops=tail_flops,
    )
    got, by_episode = run.got, events_by_episode(run.log)
    decoded = decode_delivered(
        payload, plan, [(i, s, ev.flips) for i, evs in by_episode.items() for s, ev in evs.items() if ev.delivered]
    )
    tally = Tally(len(budgets), count)
    tail = net.tail(k)
    for b, budget in enumerate(budgets):
        received = []
        for i in range(count):
            arrived = got.get((i, b), [])
            evs = by_episode.get(i, {})
            tally.tx_s[b, i] = transmit_s(list(evs.values()), budget)
            tally.flipped[b, i] = sum(evs[s].flips.size for s in arrived)
            tally.got_bytes[b, i] = sum(sizes[s] for s in arrived)
            received.append(received_units(decoded, plan, i, arrived))
            tally.units[b, i] = len(received[-1])
        tally.correct[b] = (classify(tail, tails, plan, received) == y).numpy()
    with torch.no_grad():
        overall = accuracy(tails[-1] if tails is not None else tail, o, y)
    return MethodResult(tally.rows(method, budgets, head_s, device), overall, float(sum(sizes)), run.timeline)


def _raw_messages(method: str, imgs: np.ndarray, budgets: Sequence[float], link: Link) -> list[list[bytes]]:
    """[budget][image]: the message that fits the budget's airtime (the budget less the latency)."""
    messages = []
    for budget in budgets:
        room = budget - link.latency_s
        messages.append([encode_raw(method, img, lambda nbytes: airtime_s(link, nbytes) <= room) for img in imgs])
    return messages


def _run_raw(
    cfg: Config,
    method: str,
    net: SplitNet,
    x: torch.Tensor,
    y: torch.Tensor,
    device: DeviceProfile,
    server: DeviceProfile,
    full_flops: int,
) -> MethodResult:
    """The raw sensor image, compressed to fit each budget (`experiments.nair.codecs`); one
    message per inference and budget, decoded with its bit errors, then the whole original model."""
    budgets = list(cfg.workload.latencies_s)
    shape = tuple(int(s) for s in x.shape[1:])
    count = len(y)
    network, on_server = nair_network(cfg, device, server)
    messages = _raw_messages(method, x.numpy(), budgets, network.links(0)[0])
    keys = [(b, i) for b in range(len(budgets)) for i in range(count)]
    episodes = [(0.0, [len(messages[b][i])] if messages[b][i] else [], [budgets[b]]) for b, i in keys]
    run = simulate_link(
        network, on_server, episodes, lambda e: stream(cfg.seed, "nair-link", method, *keys[e]), server_flops=full_flops
    )
    got, events = run.got, {ev.episode: ev for ev in run.log}
    tally = Tally(len(budgets), count)
    for b in range(len(budgets)):
        batch = np.zeros((count, *shape), dtype=np.float32)
        for i in range(count):
            e = b * count + i
            ev = events.get(e)
            tally.tx_s[b, i] = transmit_s([ev], budgets[b]) if ev is not None else 0.0
            if ev is None or 0 not in got.get((e, 0), []):
                continue
            buf = np.frombuffer(messages[b][i], dtype=np.uint8).copy()
            if ev.flips.size:
                flip_bits(buf, ev.flips)
            tally.units[b, i], tally.got_bytes[b, i], tally.flipped[b, i] = 1, buf.size, ev.flips.size
            image = decode_raw(method, buf, shape)
            if image is not None:
                batch[i] = image
        with torch.no_grad():
            tally.correct[b] = (net(torch.from_numpy(batch).to(device_of(net))).argmax(1).cpu() == y).numpy()
    overall = accuracy(net, x, y)
    payload = full_payload_bytes(method, x.numpy())
    return MethodResult(tally.rows(method, budgets, 0.0, device), overall, payload, run.timeline)


def evaluate(
    cfg: Config,
    method: str,
    net: SplitNet,
    tails: list[Tail] | None,
    order: np.ndarray,
    x: torch.Tensor,
    y: torch.Tensor,
    head_s: float,
    device: DeviceProfile,
    server: DeviceProfile,
    server_flops: int,
) -> MethodResult:
    """One method's simulated system and real inference (one call of `executor.map`): the
    device runs the head (`head_s`), the server `server_flops` per budget (the tail, or the
    whole model on the raw input)."""
    if method in RAW_METHODS:
        return _run_raw(cfg, method, net, x, y, device, server, server_flops)
    slices = (cfg, method, net, tails, order, method.startswith("nair"), x, y)
    return _run_slices(*slices, head_s, device, server, server_flops)

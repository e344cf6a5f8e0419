"""What every schedule's training shares, with no clock: the microbatch stream, a model's
initial weights and per-layer costs, a stage built for a schedule, one whole-model SGD step,
and the weight averaging of data-parallel training.

Every schedule trains the same model from the same initial weights on the same microbatch
stream; the simulation (`sim.mcpipe`) only decides when each of these steps happens.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from experiments.common.data import Dataset
from experiments.common.flops import FlopCache

from .memory import Memory
from .model import Layer, Params
from .stage import Stage
from .versions import SGD, make_store, nbytes

__all__ = ["Batches", "Model", "average", "build_model", "layer_costs", "set_latest", "train_step"]


class Batches:
    """The microbatch stream: microbatch k holds positions [k*b, (k+1)*b) of a sequence of
    per-epoch permutations of the training set, epoch e's drawn from `orders(e)` (the same
    stream for every schedule), on `device`."""

    def __init__(
        self, data: Dataset, b: int, orders: Callable[[int], np.random.Generator], device: torch.device | None = None
    ) -> None:
        self.data, self.b, self.orders = data, b, orders
        self.device = torch.device("cpu") if device is None else device
        self.order = np.empty(0, dtype=np.int64)
        self.epochs = 0

    def __call__(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(self.data.y_train)
        while len(self.order) < (k + 1) * self.b:
            perm = self.orders(self.epochs).permutation(n)
            self.order = np.concatenate([self.order, perm])
            self.epochs += 1
        idx = torch.from_numpy(self.order[k * self.b : (k + 1) * self.b])
        return self.data.x_train[idx].to(self.device), self.data.y_train[idx].to(self.device)


def _clone(params: list[Params]) -> list[Params]:
    return [(w.clone(), b.clone()) for w, b in params]


@dataclass
class Model:
    """One model's shared pieces: its layers, initial weights, FLOP counts, and per layer the
    training FLOPs of one microbatch (forward, error down, weight gradient, optimiser: what a
    partition balances) and the bytes of one microbatch's (activation, error) pair."""

    name: str
    layers: list[Layer]
    init: list[Params]
    flops: FlopCache
    layer_flops: list[int]
    pair_bytes: list[int]

    def params(self) -> list[Params]:
        """A copy of the initial weights, for one run to train."""
        return _clone(self.init)

    def stage(
        self,
        schedule: str,
        index: int,
        bounds: tuple[int, int],
        init: list[Params],
        opt: SGD,
        *,
        store: str,
        lowrank: bool,
        first: bool,
        last: bool,
    ) -> Stage:
        """Layers [bounds) as pipeline stage `index`, with `schedule`'s weight-version stores
        starting from `init` (indexed by layer)."""
        start, end = bounds
        stores = [
            make_store(
                schedule,
                self.layers[i],
                init[i],
                opt,
                self.flops,
                store=store,
                pair_bytes=self.pair_bytes[i],
                lowrank=lowrank,
            )
            for i in range(start, end)
        ]
        return Stage(index, self.layers[start:end], stores, self.flops, first=first, last=last)

    def layer_rows(self, microbatch: int) -> list[dict]:
        """layers.csv: per layer, its size, its pair's size, which is cheaper to store, its FLOPs."""
        rows = []
        for layer, p, f, pb in zip(self.layers, self.init, self.layer_flops, self.pair_bytes):
            wb = nbytes(*p)
            rows.append(
                {
                    "model": self.name,
                    "layer": layer.index,
                    "kind": layer.kind,
                    "params": layer.num_params,
                    "weight_bytes": wb,
                    "pair_bytes": pb,
                    "microbatch": microbatch,
                    "cheaper_to_store": "vectors" if pb < wb else "weights",
                    "train_flops": f,
                }
            )
        return rows


def layer_costs(
    layers: list[Layer], init: list[Params], flops: FlopCache, x: torch.Tensor, y: torch.Tensor, opt: SGD
) -> tuple[list[int], list[int]]:
    """Per layer, from one real training step of a microbatch on the whole model: training
    FLOPs (forward, error down, weight gradient, optimiser) and the (a, dz) pair's bytes."""
    stores = [make_store("pipedream", layer, p, opt, flops) for layer, p in zip(layers, init)]
    stage = Stage(0, layers, stores, flops, first=True, last=True)
    out, rec, _ = stage.forward(x)
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


def build_model(
    name: str, layers: list[Layer], gen: torch.Generator, batch: tuple[torch.Tensor, torch.Tensor], opt: SGD
) -> Model:
    """Model `name`: initial weights drawn from `gen`, costs measured on the microbatch `batch`."""
    init = [layer.init(gen) for layer in layers]
    flops = FlopCache()
    layer_flops, pair_bytes = layer_costs(layers, _clone(init), flops, *batch, opt)
    return Model(name, layers, init, flops, layer_flops, pair_bytes)


def train_step(stage: Stage, x: torch.Tensor, y: torch.Tensor, mem: Memory) -> int:
    """One real SGD step of the whole model held by `stage` (its peak memory into `mem`);
    returns its FLOPs."""
    out, rec, c1 = stage.forward(x)
    _, d = stage.loss_error(out, y)
    _, pairs, c2 = stage.backward(rec, d)
    mem.observe(
        weights=stage.stored_weight_bytes,
        vectors=0,
        optimizer=stage.optimizer_bytes,
        activations=rec.bytes + nbytes(*(t for pr in pairs for t in pr)),
        versions=stage.num_versions,
    )
    c3 = stage.update(pairs)
    return c1.total_flops + c2.total_flops + c3.total_flops


def set_latest(stage: Stage, flat: list[torch.Tensor]) -> None:
    """Replace a worker's latest weights by received ones, (weight, bias) of each layer in
    turn (its momentum stays local)."""
    for j, store in enumerate(stage.stores):
        store.versions = {store.latest: (flat[2 * j], flat[2 * j + 1])}


def average(uploads: list[list[torch.Tensor]]) -> list[Params]:
    """The element-wise mean of the workers' flat (weight, bias, weight, bias, ...) lists."""
    with torch.no_grad():
        flat = [torch.stack(ts).mean(0) for ts in zip(*uploads)]
    return [(flat[2 * j], flat[2 * j + 1]) for j in range(len(flat) // 2)]

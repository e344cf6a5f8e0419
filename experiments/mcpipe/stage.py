"""One pipeline stage: a contiguous run of layers, their version stores, and the two passes.

`forward` runs the layers with the latest version and returns what the backward needs (a
`Record`: the version, each layer's input `a` and pre-activation `z`). `backward` turns the
error of the stage's output into each layer's error `dz`, the error to pass down (through
the version the forward used, or the latest under GreedyUpdates) and one update per layer.
Each call returns the FLOPs it performed, so that the caller can charge them to a device.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from experiments.common.flops import FlopCache

from .model import Layer, model_input
from .versions import StashStore, VectorStore, nbytes

__all__ = ["Cost", "Record", "Stage"]


@dataclass
class Record:
    """What a microbatch leaves at a stage between its forward and its backward."""

    version: int
    inputs: list[torch.Tensor]  # each layer's op input a
    pre: list[torch.Tensor]  # each layer's pre-activation z

    @property
    def bytes(self) -> int:
        return nbytes(*self.inputs, *self.pre)


@dataclass
class Cost:
    """The work of one stage's pass: FLOPs by kind and its largest transient copy."""

    flops: int = 0  # the pass itself
    rebuild_flops: int = 0  # mcPipe: weight versions rebuilt from stored pairs
    update_flops: int = 0  # weight gradients and optimiser steps
    working_bytes: int = 0  # largest transient rebuilt weight copy

    @property
    def total_flops(self) -> int:
        return self.flops + self.rebuild_flops + self.update_flops


class Stage:
    def __init__(
        self,
        index: int,
        layers: Sequence[Layer],
        stores: Sequence[StashStore | VectorStore],
        flops: FlopCache,
        *,
        first: bool,
        last: bool,
    ) -> None:
        self.index, self.layers, self.stores, self.flops = index, list(layers), list(stores), flops
        self.first, self.last = first, last

    @property
    def latest(self) -> int:
        return self.stores[0].latest

    def _params(self, i: int, v: int, cost: Cost):
        p, f, w = self.stores[i].get(v)
        cost.rebuild_flops += f
        cost.working_bytes = max(cost.working_bytes, w)
        return p

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Record, Cost]:
        """Run the stage on `x` with the latest weights; the first stage takes the data batch."""
        cost, v = Cost(), self.latest
        a = model_input(self.layers, x) if self.first else x
        rec = Record(v, [], [])
        for i, layer in enumerate(self.layers):
            if getattr(self.stores[i], "lowrank", False):
                z, f, r, w = self.stores[i].linear_apply(v, a, "forward")
                cost.rebuild_flops += r
                cost.working_bytes = max(cost.working_bytes, w)
            else:
                p = self._params(i, v, cost)
                z, f = self.flops.run(("fwd", layer.index, tuple(a.shape)), lambda: layer.op(a, p))
            cost.flops += f
            rec.inputs.append(a)
            rec.pre.append(z)
            a = layer.after(z)
        return a, rec, cost

    @staticmethod
    def loss_error(logits: torch.Tensor, y: torch.Tensor) -> tuple[float, torch.Tensor]:
        """Mean cross-entropy of the microbatch and its gradient with respect to the logits."""
        with torch.enable_grad():
            lg = logits.detach().requires_grad_(True)
            loss = F.cross_entropy(lg, y)
            (d,) = torch.autograd.grad(loss, lg)
        return float(loss.detach()), d

    @torch.no_grad()
    def backward(
        self, rec: Record, d_out: torch.Tensor
    ) -> tuple[torch.Tensor | None, list[tuple[torch.Tensor, torch.Tensor]], Cost]:
        """The error to send down (None at the first stage) and each layer's (a, dz) pair;
        the caller applies them with `update`. A consistent store gives the forward's
        version; GreedyUpdates' gives the latest."""
        cost = Cost()
        d = d_out
        pairs: list[tuple[torch.Tensor, torch.Tensor]] = [None] * len(self.layers)
        for i in range(len(self.layers) - 1, -1, -1):
            layer, a, z = self.layers[i], rec.inputs[i], rec.pre[i]
            dz = layer.error(z, d)
            pairs[i] = (a, dz)
            if self.first and i == 0:
                d = None  # nothing below the first layer needs an error
                break
            if getattr(self.stores[i], "lowrank", False):
                d, f, r, w = self.stores[i].linear_apply(rec.version, dz, "input")
                cost.rebuild_flops += r
                cost.working_bytes = max(cost.working_bytes, w)
            else:
                p = self._params(i, rec.version, cost)
                d, f = self.flops.run(("bwd", layer.index, tuple(dz.shape)), lambda: layer.input_grad(a.shape, p, dz))
            cost.flops += f
        return d, pairs, cost

    @torch.no_grad()
    def update(self, pairs: Sequence[tuple[torch.Tensor, torch.Tensor]], v_min: int | None = None) -> Cost:
        """Apply one update per layer from its (a, dz) pair (stash: computed now; mcPipe:
        stored), then let go of versions older than `v_min`, the oldest one a microbatch in
        flight still needs (None: none is in flight, only the new latest is kept)."""
        cost = Cost()
        for store, (a, dz) in zip(self.stores, pairs):
            cost.update_flops += store.push(a, dz)
        v_min = self.latest if v_min is None else v_min
        for store in self.stores:
            cost.update_flops += store.release(v_min)
        return cost

    def latest_params(self):
        """The latest weights of every layer (for evaluation; rebuilt without charge)."""
        return [s.get(s.latest)[0] for s in self.stores]

    # --- memory held now ---------------------------------------------------------------------
    @property
    def stored_weight_bytes(self) -> int:
        return sum(s.stored_weight_bytes for s in self.stores)

    @property
    def vector_bytes(self) -> int:
        return sum(s.vector_bytes for s in self.stores)

    @property
    def optimizer_bytes(self) -> int:
        return sum(s.optimizer_bytes for s in self.stores)

    @property
    def num_versions(self) -> int:
        """Distinct weight versions held (a layer storing pairs holds one)."""
        return max(s.num_versions for s in self.stores)

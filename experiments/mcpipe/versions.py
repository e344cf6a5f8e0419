"""Weight versions of one layer: PipeDream's stash, mcPipe's (activation, error) pairs, and
the single latest version of GreedyUpdates.

Version v of a layer is its weights after v updates. A forward uses the latest version; a
consistent backward (PipeDream, mcPipe) uses the version its forward used, so every version
still referenced by a microbatch in flight must be available:

- `StashStore` (PipeDream's weight stashing) keeps each such version as a weight tensor;
- `VectorStore` (mcPipe, section IV-C) keeps one weight version, the oldest still needed,
  plus the (activation, error) pair of every later update, and rebuilds a later version on
  demand by replaying those updates in order. With plain SGD the update is
  W <- W - lr * dz^T a, so the rebuilt weights are those PipeDream stashed; with momentum or
  weight decay the replay starts from the stored optimiser state of the kept version.
- `StashStore(consistent=False)` is GreedyUpdates: only the latest version, used by both passes.

Every store returns the FLOPs it spent (the weight gradients it computed, counted with
`FlopCounterMode`, plus the optimiser's element-wise work, counted analytically) so the
simulation can charge them to the worker.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from experiments.common.flops import FlopCache

from .model import Layer, Params

__all__ = ["SGD", "STORES", "StashStore", "VectorStore", "make_store", "nbytes", "stores_pairs"]

STORES = ("vectors", "weights", "auto")


def nbytes(*tensors: torch.Tensor) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


@dataclass(frozen=True)
class SGD:
    """SGD as torch.optim.SGD defines it (no dampening, no Nesterov), as a pure function."""

    lr: float
    momentum: float = 0.0
    weight_decay: float = 0.0

    def step(self, p: Params, buf: Params | None, g: Params) -> tuple[Params, Params | None]:
        if self.weight_decay:
            g = tuple(gi + self.weight_decay * pi for gi, pi in zip(g, p))
        if self.momentum:
            if buf is None:
                buf = tuple(gi.clone() for gi in g)
            else:
                buf = tuple(self.momentum * b + gi for b, gi in zip(buf, g))
            g = buf
        return tuple(pi - self.lr * gi for pi, gi in zip(p, g)), buf

    def elementwise_flops(self, num_params: int) -> int:
        """Multiplies and adds of one step: lr * g and the subtraction, plus weight decay's
        and momentum's two each when they are on."""
        return 2 * num_params * (1 + bool(self.weight_decay) + bool(self.momentum))


class _Store:
    """Common part: the layer, its optimiser, the FLOP counter, the latest version number."""

    def __init__(self, layer: Layer, params: Params, opt: SGD, flops: FlopCache) -> None:
        self.layer, self.opt, self.flops = layer, opt, flops
        self.weight_bytes = nbytes(*params)
        self.latest = 0

    def _grad(self, a: torch.Tensor, dz: torch.Tensor) -> tuple[Params, int]:
        g, f = self.flops.run(("wgrad", self.layer.index, tuple(a.shape)), lambda: self.layer.weight_grad(a, dz))
        return g, f + self.opt.elementwise_flops(self.layer.num_params)


class StashStore(_Store):
    """PipeDream: each version still needed is stored as weights (`consistent=False`:
    GreedyUpdates, which keeps only the latest and uses it for every pass)."""

    kind = "weights"

    def __init__(self, layer: Layer, params: Params, opt: SGD, flops: FlopCache, consistent: bool = True) -> None:
        super().__init__(layer, params, opt, flops)
        self.consistent = consistent
        self.versions: dict[int, Params] = {0: params}
        self.buf: Params | None = None

    def get(self, v: int) -> tuple[Params, int, int]:
        """(weights of version v, FLOPs spent, bytes of a transient copy made)."""
        return self.versions[v if self.consistent else self.latest], 0, 0

    def push(self, a: torch.Tensor, dz: torch.Tensor) -> int:
        g, f = self._grad(a, dz)
        new, self.buf = self.opt.step(self.versions[self.latest], self.buf, g)
        self.latest += 1
        self.versions[self.latest] = new
        if not self.consistent:
            self.release(self.latest)
        return f

    def release(self, v_min: int) -> int:
        for v in [v for v in self.versions if v < min(v_min, self.latest)]:
            del self.versions[v]
        return 0

    @property
    def num_versions(self) -> int:
        return len(self.versions)

    @property
    def stored_weight_bytes(self) -> int:
        return self.weight_bytes * len(self.versions)

    @property
    def vector_bytes(self) -> int:
        return 0

    @property
    def optimizer_bytes(self) -> int:
        return nbytes(*self.buf) if self.buf is not None else 0


class VectorStore(_Store):
    """mcPipe: one weight version (the oldest still needed) plus the (activation, error)
    pairs of the updates after it; later versions are rebuilt when a pass needs them."""

    kind = "vectors"

    def __init__(self, layer: Layer, params: Params, opt: SGD, flops: FlopCache, lowrank: bool = False) -> None:
        super().__init__(layer, params, opt, flops)
        self.base_v = 0
        self.base: Params = params
        self.base_buf: Params | None = None
        self.pairs: list[tuple[torch.Tensor, torch.Tensor]] = []
        # `rebuild=lowrank`: a linear layer under plain SGD applies a later version without
        # forming it (W_v = W_b - lr * sum_j dz_j^T a_j is the kept weights plus low-rank terms)
        self.lowrank = lowrank and layer.kind == "linear" and not opt.momentum and not opt.weight_decay
        if self.lowrank:
            self.base = tuple(t.clone() for t in params)  # updated in place when it moves forward

    def linear_apply(self, v: int, x: torch.Tensor, side: str) -> tuple[torch.Tensor, int, int, int]:
        """Version v of a linear layer applied to `x` without forming its weights:
        side 'forward': x W_v^T + b_v = x W_b^T + b_b - lr * sum_j ((x a_j^T) dz_j + sum(dz_j));
        side 'input' (x is an error dz): dz W_v = dz W_b - lr * sum_j (dz dz_j^T) a_j.
        Returns (result, FLOPs with the kept version, FLOPs of the low-rank terms, bytes of the
        largest temporary)."""
        if not self.base_v <= v <= self.latest:
            raise KeyError(f"layer {self.layer.index}: version {v} not rebuildable from {self.base_v}..{self.latest}")
        (w, b), lr, idx = self.base, self.opt.lr, self.layer.index
        pairs = self.pairs[: v - self.base_v]
        if side == "forward":
            out, f = self.flops.run(("fwd", idx, tuple(x.shape)), lambda: torch.nn.functional.linear(x, w, b))
        else:
            out, f = self.flops.run(("bwd", idx, tuple(x.shape)), lambda: x @ w)

        def corrections(out: torch.Tensor) -> torch.Tensor:
            for a_j, dz_j in pairs:
                if side == "forward":
                    out = out - lr * ((x @ a_j.t()) @ dz_j + dz_j.sum(0))
                else:
                    out = out - lr * ((x @ dz_j.t()) @ a_j)
            return out

        shapes = tuple(tuple(a.shape) for a, _ in pairs)
        out, r = self.flops.run(("lowrank", side, idx, tuple(x.shape), shapes), lambda: corrections(out))
        temp = max((x.shape[0] * a.shape[0] for a, _ in pairs), default=0) + (out.numel() if pairs else 0)
        return out, f, r, temp * out.element_size()

    def get(self, v: int) -> tuple[Params, int, int]:
        if not self.base_v <= v <= self.latest:
            raise KeyError(f"layer {self.layer.index}: version {v} not rebuildable from {self.base_v}..{self.latest}")
        p, buf, spent = self.base, self.base_buf, 0
        for a, dz in self.pairs[: v - self.base_v]:
            g, f = self._grad(a, dz)
            p, buf = self.opt.step(p, buf, g)
            spent += f
        return p, spent, (self.weight_bytes if v > self.base_v else 0)

    def push(self, a: torch.Tensor, dz: torch.Tensor) -> int:
        self.pairs.append((a, dz))
        self.latest += 1
        return 0

    def release(self, v_min: int) -> int:
        """Move the kept version forward to `v_min` (no pass needs older ones): the pairs in
        between are applied to it once and dropped."""
        spent = 0
        while self.base_v < min(v_min, self.latest):
            a, dz = self.pairs.pop(0)
            if self.lowrank:  # in place: W_b <- W_b - lr dz^T a, with no gradient-sized buffer
                w, b = self.base
                lr = self.opt.lr
                _, f = self.flops.run(
                    ("wgrad", self.layer.index, tuple(a.shape)),
                    lambda: (w.addmm_(dz.t(), a, alpha=-lr), b.add_(dz.sum(0), alpha=-lr)),
                )
                f += self.opt.elementwise_flops(self.layer.num_params)
            else:
                g, f = self._grad(a, dz)
                self.base, self.base_buf = self.opt.step(self.base, self.base_buf, g)
            self.base_v += 1
            spent += f
        return spent

    @property
    def num_versions(self) -> int:
        return 1

    @property
    def stored_weight_bytes(self) -> int:
        return self.weight_bytes

    @property
    def vector_bytes(self) -> int:
        return sum(nbytes(a, dz) for a, dz in self.pairs)

    @property
    def optimizer_bytes(self) -> int:
        return nbytes(*self.base_buf) if self.base_buf is not None else 0


def stores_pairs(store: str, pair_bytes: int, weight_bytes: int) -> bool:
    """Whether an mcPipe layer keeps (activation, error) pairs under `store` (else weight versions)."""
    if store not in STORES:
        raise ValueError(f"store={store!r}: allowed: {', '.join(STORES)}")
    return store == "vectors" or (store == "auto" and pair_bytes < weight_bytes)


def make_store(
    schedule: str,
    layer: Layer,
    params: Params,
    opt: SGD,
    flops: FlopCache,
    *,
    store: str = "vectors",
    pair_bytes: int = 0,
    lowrank: bool = False,
) -> StashStore | VectorStore:
    """The store a layer gets under `schedule`: 'pipedream' stashes weights, 'greedy' keeps
    the latest only, 'mcpipe' keeps pairs (`store='vectors'`, the paper), weights
    (`'weights'`), or per layer whichever of one pair (`pair_bytes`) and one weight version
    is smaller (`'auto'`); `lowrank` applies later versions of its linear layers without
    forming them (plain SGD only)."""
    if schedule == "pipedream":
        return StashStore(layer, params, opt, flops)
    if schedule == "greedy":
        return StashStore(layer, params, opt, flops, consistent=False)
    if schedule != "mcpipe":
        raise ValueError(f"schedule {schedule!r} has no weight-version store")
    if stores_pairs(store, pair_bytes, nbytes(*params)):
        return VectorStore(layer, params, opt, flops, lowrank=lowrank)
    return StashStore(layer, params, opt, flops)

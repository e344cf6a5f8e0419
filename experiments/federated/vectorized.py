"""Many clients of the built-in workload trained at once: `torch.func.functional_call` + `vmap`
over the clients' stacked weights (`workload.vectorize=true`).

The built-in ClientApp trains one client after another: per step a forward and backward of a
small model on 16 samples and an SGD step, for every client. Here the clients of a round that
share a learning rate and objective run as one computation: their weights are stacked along a
leading client dimension, `vmap(grad(loss))` gives every client's gradient of its own loss on
its own batch in one pass (a convolution becomes one grouped convolution over all clients), and
the SGD step (torch's single-tensor SGD: weight decay, momentum, Nesterov) updates all of them in
a few whole-tensor operations. What each client computes is what the per-client loop computes:
the same batches in the same order (each client's `torch.randperm` per epoch from its own job
seed), the same loss (cross-entropy, FedMAX's entropy term, FedProx's proximal term), the same
update; the results agree with the loop's to float rounding (`tests/test_vmap.py`).

Clients with unequal data take unequal numbers of steps, and an epoch's last batch may be short.
A short batch is padded to the batch size with zero samples of weight 0 (the loss is the
weighted mean, so the padding changes nothing); the clients are ordered by their number of steps,
most first, so the clients still training at a step are a prefix of the stack, and each step
runs on that prefix only (a view: no copies; a finished client's weights and momentum are not
touched again). `benchmarks/vmap.py` measured this against the other two ways, on 29 clients of
16 to 90 samples: 2.3-3.1x faster than the per-client loop, against 1.7-2.1x for every client in
every step with the finished ones masked out (`mode="mask"`) and 1.6-1.7x for one vmap per group
of clients with equal steps; with equal steps all three are the same.

This module is the training (pure torch, as the rest of `experiments`); `sim.backends.vectorized` is the
local back end's side: it charges each client, through the same `WorkMeter` cache, the FLOPs and
peak memory of the calls the per-client loop makes for its own batches, so simulated time, bytes
and energy do not change; jobs this path does not train (`group_jobs`: an evaluate message, an
empty partition) run through the ClientApp as usual.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from flwr.app import Message
from torch import nn
from torch.func import functional_call, grad, vmap

from experiments.common.torchdev import use_torch_device
from experiments.federated.records import to_array_record, to_state_dict
from experiments.federated.task import FederatedTask, learning_rate, train_reply
from strategies.objectives import ClientObjective

__all__ = ["Trained", "group_jobs", "train_clients", "train_messages", "unsupported"]

MODES = ("prefix", "mask")


def unsupported(model: nn.Module) -> str | None:
    """Why `model` cannot be trained client-stacked the way the per-client loop trains it, or
    None if it can: buffers (BatchNorm's running statistics) would be updated once per call, not
    per client; batch norm mixes the samples of a batch, so padding a short batch would change
    it; dropout draws random numbers the per-client loop would draw differently."""
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.batchnorm._NormBase):
            return f"it has batch normalisation ({name or 'the model'})"
        if isinstance(m, nn.modules.dropout._DropoutNd):
            return f"it has dropout ({name or 'the model'})"
    buffers = [n for n, _ in model.named_buffers()]
    if buffers:
        return f"it has buffers ({', '.join(buffers[:3])})"
    return None


@dataclass
class Trained:
    """One client's outcome, as the per-client loop's `_train` gives it."""

    state_dict: dict[str, torch.Tensor]
    loss: float
    batch_sizes: list[int]  # of every step, in order (the meter charges one top-level call each)


def _step_fn(model: nn.Module, objective: ClientObjective):
    """Per-client gradient and loss of one padded batch; vmapped over clients."""
    beta, mu = objective.beta, objective.mu

    def loss_fn(params, x, y, w, anchor):
        logits, feats = functional_call(model, params, (x,), {"with_features": True})
        n = w.sum()
        loss = (F.cross_entropy(logits, y, reduction="none") * w).sum() / n
        if beta > 0.0:  # strategies.objectives.max_entropy_term, a weighted mean over the real samples
            d = feats.shape[1]
            per_sample = (math.log(1.0 / d) - F.log_softmax(feats, dim=1)).mean(1)
            loss = loss + beta * ((per_sample * w).sum() / n / d)
        if mu > 0.0:
            loss = loss + 0.5 * mu * sum((p - anchor[k]).pow(2).sum() for k, p in params.items())
        return loss, loss.detach()

    return vmap(grad(loss_fn, has_aux=True), in_dims=(0, 0, 0, 0, 0 if mu > 0.0 else None))


def _batches(n: int, seed: int, epochs: int, batch_size: int, offset: int, pad: int) -> torch.Tensor:
    """(steps, batch_size) rows of one client's batches in the stacked data, in the loop's order
    (one `torch.randperm` per epoch from the job's seed); a short batch is filled with `pad`."""
    gen = torch.Generator()
    gen.manual_seed(seed)
    per_epoch = -(-n // batch_size)
    rows = torch.full((epochs, per_epoch * batch_size), pad, dtype=torch.long)
    for e in range(epochs):
        rows[e, :n] = torch.randperm(n, generator=gen) + offset
    return rows.reshape(epochs * per_epoch, batch_size)


def train_clients(
    task: FederatedTask,
    model: nn.Module,
    starts: Sequence[dict[str, torch.Tensor]],
    partitions: Sequence[np.ndarray],
    seeds: Sequence[int],
    lr: float,
    objective: ClientObjective,
    mode: str = "prefix",
) -> list[Trained]:
    """Train clients k = 0..K-1 together, each from weights `starts[k]` on its partition with the
    batches of torch seed `seeds[k]`: what `experiments.federated._train` does one by one.

    `mode`: "prefix" (clients ordered by steps, most first; each step runs on those still
    training) or "mask" (every step runs on all clients; a finished one's update is discarded)."""
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}: allowed: {', '.join(MODES)}")
    k_all, bsz, epochs = len(starts), task.batch_size, task.local_epochs
    sizes = [len(p) for p in partitions]
    if k_all == 0:
        return []
    if min(sizes) < 1:
        raise ValueError("every client needs at least one sample")
    order = sorted(range(k_all), key=lambda k: -sizes[k])  # most steps first (stable)
    names = [n for n, _ in model.named_parameters()]
    device = use_torch_device(task.torch_device)
    # the clients' data, stacked, and one zero sample for padding
    x = torch.cat(
        [task.data.x_train[partitions[k]] for k in order]
        + [task.data.x_train.new_zeros((1, *task.data.x_train.shape[1:]))]
    ).to(device)
    y = torch.cat([task.data.y_train[partitions[k]] for k in order] + [task.data.y_train.new_zeros(1)]).to(device)
    pad = len(x) - 1
    offsets = np.concatenate([[0], np.cumsum([sizes[k] for k in order])])
    schedules = [_batches(sizes[k], seeds[k], epochs, bsz, int(offsets[j]), pad) for j, k in enumerate(order)]
    steps = [len(s) for s in schedules]
    rows = torch.full((k_all, steps[0], bsz), pad, dtype=torch.long)
    for j, s in enumerate(schedules):
        rows[j, : len(s)] = s
    rows_on = rows.to(device)  # the batches drawn on the CPU (as the loop draws them), used where the data is
    like = dict(model.named_parameters())
    params = {n: torch.stack([starts[k][n] for k in order]).to(device, like[n].dtype) for n in names}
    anchor = {n: p.clone() for n, p in params.items()} if objective.mu > 0.0 else None
    bufs: dict[str, torch.Tensor] = {}
    step = _step_fn(model, objective)
    momentum, wd = task.momentum, task.weight_decay
    steps_t = torch.tensor(steps)
    losses: list[torch.Tensor] = []
    for s in range(steps[0]):
        a = int((steps_t > s).sum()) if mode == "prefix" else k_all
        live = (steps_t > s).to(device) if mode == "mask" else None  # prefix: all of the first `a` are
        r = rows_on[:a, s]
        view = {n: p[:a] for n, p in params.items()}
        grads, loss = step(
            view, x[r], y[r], (r != pad).to(x.dtype), None if anchor is None else {n: t[:a] for n, t in anchor.items()}
        )
        _sgd_step(view, grads, bufs, s == 0, a, lr, momentum, wd, live)
        losses.append(loss)
    loss_rows = [loss.tolist() for loss in losses]
    out: list[Trained | None] = [None] * k_all
    for j, k in enumerate(order):
        out[k] = _trained(j, {n: params[n][j] for n in names}, schedules[j], steps[j] // epochs, pad, loss_rows)
    return out


def _sgd_step(
    view: dict[str, torch.Tensor],
    grads: dict[str, torch.Tensor],
    bufs: dict[str, torch.Tensor],
    first: bool,
    a: int,
    lr: float,
    momentum: float,
    wd: float,
    live: torch.Tensor | None,
) -> None:
    """torch.optim.SGD's single-tensor step (Nesterov when momentum > 0), on every client at once;
    `first`: every client's first step (the momentum buffers start from the gradient)."""
    with torch.no_grad():
        for n, p in view.items():
            g = grads[n]
            if wd != 0:
                g = g.add(p, alpha=wd)
            if momentum != 0:
                if first:
                    buf = bufs[n] = g.detach().clone()
                else:
                    buf = bufs[n][:a]
                    _update(buf, buf.mul(momentum).add(g), live)
                g = g.add(buf, alpha=momentum) if momentum > 0 else buf  # Nesterov, as the loop's SGD
            _update(p, p.add(g, alpha=-lr), live)


def _trained(j: int, params: dict, sched: torch.Tensor, per_epoch: int, pad: int, loss_rows: list) -> Trained:
    """Client j's outcome: its weights, and the loss of its last epoch (as the loop tallies it)."""
    steps = len(sched)
    batch_sizes = (sched != pad).sum(1).tolist()
    total, count = 0.0, 0
    for s in range(steps - per_epoch, steps):
        total += loss_rows[s][j] * batch_sizes[s]
        count += batch_sizes[s]
    return Trained(params, total / max(count, 1), batch_sizes)


def _update(t: torch.Tensor, new: torch.Tensor, live: torch.Tensor | None) -> None:
    """t <- new, in place; with `live`, only for the clients it marks."""
    if live is None:
        t.copy_(new)
    else:
        t.copy_(torch.where(live.view(-1, *[1] * (t.dim() - 1)), new, t))


def group_jobs(task: FederatedTask, jobs: Sequence) -> tuple[dict[tuple[float, ClientObjective], list[int]], list[int]]:
    """The jobs (message, context, seed) this path trains, by (learning rate, objective), and the
    others (evaluate messages, messages without arrays or config, empty partitions), which the
    ClientApp runs itself."""
    groups: dict[tuple[float, ClientObjective], list[int]] = {}
    others = []
    for i, (msg, ctx, _seed) in enumerate(jobs):
        content = msg.content
        if (
            msg.metadata.message_type == "train"
            and "arrays" in content
            and "config" in content
            and len(task.partitions[int(ctx.node_config["partition-id"])]) > 0
        ):
            config = content["config"]
            groups.setdefault((learning_rate(task, config), ClientObjective.from_config(config)), []).append(i)
        else:
            others.append(i)
    return groups, others


def train_messages(
    task: FederatedTask, model: nn.Module, jobs: Sequence, lr: float, objective: ClientObjective, mode: str = "prefix"
) -> list[tuple[Message, list[int]]]:
    """Train the jobs' clients together; for each, the reply the ClientApp would send and the
    batch size of every step it took."""
    parts = [task.partitions[int(ctx.node_config["partition-id"])] for _, ctx, _ in jobs]
    starts = [to_state_dict(msg.content["arrays"]) for msg, _, _ in jobs]
    with torch.random.fork_rng(devices=[]):  # nothing here draws from torch's global generator; guard it anyway
        trained = train_clients(task, model, starts, parts, [seed for _, _, seed in jobs], lr, objective, mode)
    keys = model.state_dict().keys()
    return [
        (
            train_reply(msg, to_array_record({k: t.state_dict[k] for k in keys}), t.loss, len(part)),
            t.batch_sizes,
        )
        for (msg, _, _), part, t in zip(jobs, parts, trained)
    ]

"""Training: the original model, NAIR's re-tuning (algorithm 2) and CLIO's baselines.

All loops are plain minibatch SGD with a cosine-annealed learning rate, shuffled by a seeded
`torch.Generator` (torch's global generator is not used).

NAIR (eqs. 11-14): from the trained original model, the split layer's unit importances
(eq. 8) are sorted once into the index vector I_k; every minibatch is fed to the tail as J
padded slices O^{1:j,zero} (the first j units of I_k kept, the rest zero) and the loss is
sum_j w_j CE_j + penalty_weight * P, where w_j = (1 - R^v_j / R^v_J)^w_non for j < J and
w_J = 1 (R^v_j the cumulative importance of the first j sorted units) and P the summed
importance of every unit but the most important one, computed from the current weights.
The ablation of table III switches the weights (all 1) and the penalty (0) off.

CLIO (jinhuang01/CLIO): the transmitted units are a prefix in native channel order. The NAIR
paper's eqs. 3-4 minimise the expected loss over the widths, alpha_j / J being the chance that
width j gets through; as in CLIO's code, each minibatch trains one width drawn with that
probability (`mode="sample"`, the default), so the full width is trained on 1/J of the
minibatches. `mode="sum"` instead sums alpha_j CE_j over every width each minibatch (alpha of
mean 1: the full width keeps weight 1, as in NAIR's eq. 11). Single tail: one tail fed with
zero-padded prefixes. Multi-tail: one tail per width, its first layer rebuilt for that width.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from experiments.common.torchdev import device_of
from experiments.common.training import SGDSettings

from .model import SplitNet, Tail
from .slicing import prefix_masks, unit_importance

__all__ = ["SGDSettings", "clio_alpha", "nair_weights", "retune_nair", "train_clio", "train_original"]


def _batches(n: int, batch_size: int, gen: torch.Generator):
    order = torch.randperm(n, generator=gen)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def _fit(
    params: Sequence[nn.Parameter],
    modules: Sequence[nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    s: SGDSettings,
    loss_fn,
) -> list[float]:
    """Run `s.epochs` of SGD over (x, y) minimising `loss_fn(xb, yb)`; mean loss per epoch."""
    opt = torch.optim.SGD(
        list(params), lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay, nesterov=s.momentum > 0
    )
    steps = s.epochs * math.ceil(len(y) / s.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + math.cos(math.pi * min(i, steps) / steps)))
    gen = torch.Generator().manual_seed(int(s.seed))
    history = []
    for m in modules:
        m.train()
    for _ in range(s.epochs):
        total, count = 0.0, 0
        for b in _batches(len(y), s.batch_size, gen):
            loss = loss_fn(x[b], y[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(b)
            count += len(b)
        history.append(total / max(count, 1))
    for m in modules:
        m.eval()
    return history


def train_original(net: SplitNet, x: torch.Tensor, y: torch.Tensor, s: SGDSettings) -> dict:
    """The original (centralised) model: plain cross-entropy."""
    hist = _fit(net.parameters(), [net], x, y, s, lambda xb, yb: F.cross_entropy(net(xb), yb))
    return {"final_train_loss": hist[-1] if hist else math.nan, "epochs": s.epochs}


def nair_weights(importance: torch.Tensor, order: Sequence[int], w_non: float) -> torch.Tensor:
    """Eq. 11 as in algorithm 2: w_j = (1 - R^v_j / max R^v)^w_non for j < J, w_J = 1, where
    R^v_j is the importance of the first j units in sorted order (a cumulative sum). In float64,
    on the CPU (not every device has float64)."""
    r_sorted = importance.detach().cpu()[torch.as_tensor(list(order))].double()
    r_v = torch.cumsum(r_sorted, 0)
    w = (1.0 - r_v / r_v.max()).clamp(min=0.0) ** float(w_non)
    w[-1] = 1.0
    return w.float()


def retune_nair(
    net: SplitNet,
    k: int,
    order: Sequence[int],
    channels_per_unit: int,
    x: torch.Tensor,
    y: torch.Tensor,
    s: SGDSettings,
    *,
    w_non: float = 2.0,
    penalty_weight: float = 1e-3,
    use_weight: bool = True,
    use_penalty: bool = True,
    fold_bn: bool = True,
) -> dict:
    """Algorithm 2 on `net` (already trained), in place. Returns the weights used and losses."""
    conv, bn = net.split_layer(k)
    channels = conv.out_channels
    device = device_of(net)
    order = list(order)
    masks = prefix_masks(order, channels, channels_per_unit).to(device)  # (J, C)
    j_count = len(order)
    imp0 = unit_importance(conv, bn, channels_per_unit, fold_bn)
    weights = (nair_weights(imp0, order, w_non) if use_weight else torch.ones(j_count)).to(device)
    rest = torch.as_tensor(order[1:], dtype=torch.long)
    tail = net.tail(k)

    def loss_fn(xb, yb):
        o = net.forward_to(xb, k)  # (B, C, H, W), computed once
        padded = (o.unsqueeze(0) * masks[:, None, :, None, None]).flatten(0, 1)  # (J*B, C, H, W)
        ce = F.cross_entropy(tail(padded), yb.repeat(j_count), reduction="none").view(j_count, -1).mean(1)
        loss = (weights * ce).sum()
        if use_penalty and penalty_weight > 0:
            loss = loss + penalty_weight * unit_importance(conv, bn, channels_per_unit, fold_bn)[rest].sum()
        return loss

    hist = _fit(net.parameters(), [net], x, y, s, loss_fn)
    return {"weights": [round(float(v), 9) for v in weights], "final_train_loss": hist[-1] if hist else math.nan}


def clio_alpha(units: int, head_emphasis: float) -> torch.Tensor:
    """CLIO's per-width loss weights alpha_j, proportional to (J - j + 1)^head_emphasis and
    scaled to mean 1: 0 gives equal weights ("normal"); larger values favour narrow prefixes
    (the paper's CLIO^l, "a larger beta on the head slice")."""
    a = torch.arange(units, 0, -1, dtype=torch.float64) ** float(head_emphasis)
    return (a / a.mean()).float()


def train_clio(
    net: SplitNet,
    k: int,
    channels_per_unit: int,
    x: torch.Tensor,
    y: torch.Tensor,
    s: SGDSettings,
    *,
    tails: Sequence[Tail] | None = None,
    head_emphasis: float = 0.0,
    mode: str = "sample",
) -> dict:
    """CLIO from the original weights, in place. `tails` (one per width, j units each): the
    multi-tail model (the head shared, each tail fed the first j units); None: a single tail
    fed zero-padded prefixes. `mode="sample"` (the paper's eqs. 3-4 as CLIO's code trains them):
    each minibatch trains one width drawn with probability alpha_j / J; `"sum"`: every minibatch
    sums alpha_j CE_j over the widths."""
    if mode not in ("sample", "sum"):
        raise ValueError(f"clio_training={mode!r}: allowed: sample, sum")
    conv, _ = net.split_layer(k)
    channels = conv.out_channels
    j_count = channels // channels_per_unit
    alpha = clio_alpha(j_count, head_emphasis)  # on the CPU: the widths are drawn there, whatever the device
    draw = torch.Generator().manual_seed(int(s.seed) + 1)
    device = device_of(net)

    def widths():
        """The widths (units - 1) one minibatch trains: one drawn (`sample`), or every one."""
        if mode == "sample":
            return [int(torch.multinomial(alpha, 1, generator=draw))]
        return range(j_count)

    scale = (torch.ones(j_count) if mode == "sample" else alpha).to(device)
    if tails is None:
        masks = prefix_masks(list(range(j_count)), channels, channels_per_unit).to(device)
        tail = net.tail(k)

        def loss_fn(xb, yb):
            o = net.forward_to(xb, k)
            js = torch.as_tensor(list(widths()))
            padded = (o.unsqueeze(0) * masks[js][:, None, :, None, None]).flatten(0, 1)
            ce = F.cross_entropy(tail(padded), yb.repeat(len(js)), reduction="none").view(len(js), -1).mean(1)
            return (scale[js] * ce).sum()

        params, modules = list(net.parameters()), [net]
    else:
        head = net.head(k)

        def loss_fn(xb, yb):
            o = head(xb)
            js = list(widths())
            ce = torch.stack([F.cross_entropy(tails[j](o[:, : (j + 1) * channels_per_unit]), yb) for j in js])
            return (scale[js] * ce).sum()

        params = list(head.parameters()) + [p for t in tails for p in t.parameters()]
        modules = [head, *tails]
    hist = _fit(params, modules, x, y, s, loss_fn)
    return {"alpha": [round(float(v), 9) for v in alpha], "final_train_loss": hist[-1] if hist else math.nan}

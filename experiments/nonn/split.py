"""The baseline NoNN is measured against: one network split horizontally over n devices.

Every convolution's output channels are divided among the devices (as the paper's section 3
describes); a convolution needs all of its input channels, so before each one (except the first,
whose input is the image every device receives) each device sends its slice of the input to
every other device. Batch norm, ReLU and the residual additions work channel by channel, on the
slice a device already holds. After the last group each device average-pools its slice and sends
it to the aggregator, which applies the FC layer.

`split_work` runs the split for real on one input: each device's share of each convolution is
computed with its slice of the weights (FLOPs counted by PyTorch), the slices are checked to
reassemble the unsplit output, and the bytes exchanged are those of the real tensor slices.
FLOPs per share follow PyTorch's count of a convolution (linear in its output channels).
`split_plan` adds what the aggregator's FC layer costs: all a timeline needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from experiments.common.torchdev import device_of

from .budget import forward_flops
from .models import WRN

__all__ = ["SplitLayer", "SplitPlan", "split_plan", "split_work"]


@dataclass(frozen=True)
class SplitLayer:
    """One convolution of the split network."""

    name: str
    flops: tuple[int, ...]  # per device, its share of this convolution
    exchange_bytes: tuple[int, ...]  # per device: bytes of its input slice sent to EACH other device (0: no exchange)


def _conv_share(conv: nn.Conv2d, x: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, int]:
    """A device's share of `conv`: its output channels `rows`, computed for real, and their
    FLOPs as PyTorch's FlopCounterMode counts a convolution (2 x output elements x C_in/groups x
    kernel area; a test checks the two agree)."""
    out = F.conv2d(
        x,
        conv.weight[rows],
        None if conv.bias is None else conv.bias[rows],
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
    )
    kh, kw = conv.kernel_size
    return out, 2 * out.numel() * (conv.in_channels // conv.groups) * kh * kw


@torch.no_grad()
def split_work(model: nn.Module, x: torch.Tensor, n: int) -> tuple[list[SplitLayer], tuple[int, ...]]:
    """(the convolutions in execution order with each device's FLOPs and exchange bytes,
    each device's bytes of pooled features sent to the aggregator) for input `x` (one image)
    through `model` (a WRN) split over `n` devices."""
    if n < 1:
        raise ValueError(f"n={n}: need at least one device")
    calls: list[tuple[str, nn.Conv2d, torch.Tensor, torch.Tensor]] = []
    names = {m: name for name, m in model.named_modules()}

    def hook(module, args, out):
        calls.append((names[module], module, args[0], out))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    was = model.training
    model.eval()
    try:
        model(x)
    finally:
        model.train(was)
        for h in handles:
            h.remove()
    layers, gathered = [], {id(x)}
    last_out = None
    for name, conv, inp, out in calls:
        if conv.groups != 1:
            raise ValueError(f"{name}: grouped convolutions are not split by this baseline")
        shares = torch.tensor_split(torch.arange(conv.out_channels), n)
        outs, flops = zip(*(_conv_share(conv, inp, rows) for rows in shares))
        if not torch.allclose(torch.cat(outs, dim=1), out, rtol=1e-4, atol=1e-5):
            raise AssertionError(f"{name}: the split convolution does not reassemble the unsplit output")
        if id(inp) in gathered:  # the image, or an input already exchanged (a shortcut's)
            exchange = (0,) * n
        else:
            exchange = tuple(int(s.numel() * s.element_size()) for s in torch.tensor_split(inp, n, dim=1))
            gathered.add(id(inp))
        layers.append(SplitLayer(name, tuple(flops), exchange))
        last_out = out
    channels = last_out.shape[1] if last_out is not None else 0
    pooled = tuple(int(len(rows) * last_out.element_size()) for rows in torch.tensor_split(torch.arange(channels), n))
    return layers, pooled


@dataclass(frozen=True)
class SplitPlan:
    """One inference of a WRN split over `devices`: its convolutions, each device's bytes of
    pooled features for the aggregator, and the FLOPs of the aggregator's FC layer."""

    devices: int
    layers: list[SplitLayer]
    pooled_bytes: tuple[int, ...]
    fc_flops: int

    @property
    def exchanged_bytes(self) -> int:
        """Bytes the devices send one another per inference (each slice to every other device)."""
        return sum(b * (self.devices - 1) for layer in self.layers for b in layer.exchange_bytes)


def split_plan(model: WRN, x: torch.Tensor, n: int) -> SplitPlan:
    """The plan of `model` split over `n` devices, measured on the one image `x` (where the model is)."""
    layers, pooled_bytes = split_work(model, x.to(device_of(model)), n)
    return SplitPlan(n, layers, pooled_bytes, forward_flops(model.fc, torch.zeros(1, model.widths[2])))

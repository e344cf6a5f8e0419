"""The models of the mcPipe workload as ordered lists of layers, the units a pipeline cuts at.

A `Layer` is one parametric operation (fully connected or 3x3 convolution) followed by the
parameter-free operations after it (ReLU, 2x2 max-pool, flatten). Its weights are not held by
the layer: every call takes them explicitly, so a pipeline stage can run the same layer with
any stored or rebuilt weight version. The backward is written per layer, from the stored
operation input `a` and pre-activation `z`: the error `dz` (gradient of the loss with
respect to `z`) and `a` are exactly the (activation, error) pair mcPipe stores.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.nn.grad import conv2d_input, conv2d_weight

__all__ = ["MODELS", "Layer", "build_layers", "evaluate", "full_forward"]

MODELS = ("vgg", "fc")
Params = tuple[torch.Tensor, torch.Tensor]  # (weight, bias)


@dataclass(frozen=True)
class Layer:
    """One parametric op: `kind` 'linear' or 'conv' (3x3, padding 1), then `post` ops."""

    index: int
    kind: str
    in_features: int  # linear: inputs; conv: input channels
    out_features: int  # linear: outputs; conv: output channels
    post: tuple[str, ...]  # of 'relu', 'pool', 'flatten', in order
    in_shape: tuple[int, ...]  # one sample's input shape
    out_shape: tuple[int, ...]  # one sample's output shape (after post)

    @property
    def weight_shape(self) -> tuple[int, ...]:
        if self.kind == "linear":
            return (self.out_features, self.in_features)
        return (self.out_features, self.in_features, 3, 3)

    @property
    def num_params(self) -> int:
        return math.prod(self.weight_shape) + self.out_features

    def init(self, gen: torch.Generator) -> Params:
        """He-normal weights for a ReLU layer (the last layer: 1/fan_in), zero bias."""
        fan_in = math.prod(self.weight_shape[1:])
        gain = 2.0 if "relu" in self.post else 1.0
        w = torch.randn(self.weight_shape, generator=gen) * math.sqrt(gain / fan_in)
        return w, torch.zeros(self.out_features)

    # --- forward -------------------------------------------------------------------------
    def op(self, a: torch.Tensor, p: Params) -> torch.Tensor:
        if self.kind == "linear":
            return F.linear(a, p[0], p[1])
        return F.conv2d(a, p[0], p[1], padding=1)

    def after(self, z: torch.Tensor) -> torch.Tensor:
        for name in self.post:
            if name == "relu":
                z = F.relu(z)
            elif name == "pool":
                z = F.max_pool2d(z, 2)
            else:
                z = z.flatten(1)
        return z

    # --- backward ------------------------------------------------------------------------
    def error(self, z: torch.Tensor, d_out: torch.Tensor) -> torch.Tensor:
        """dz: the gradient with respect to the pre-activation `z`, from the gradient of the
        layer's output (through ReLU / pool / flatten, which have no weights)."""
        if not self.post:
            return d_out
        with torch.enable_grad():
            zz = z.detach().requires_grad_(True)
            (dz,) = torch.autograd.grad(self.after(zz), zz, d_out)
        return dz

    def input_grad(self, a_shape: torch.Size, p: Params, dz: torch.Tensor) -> torch.Tensor:
        """The error passed down: gradient with respect to the layer's input, through weights `p`."""
        if self.kind == "linear":
            return dz @ p[0]
        return conv2d_input(a_shape, p[0], dz, padding=1)

    def weight_grad(self, a: torch.Tensor, dz: torch.Tensor) -> Params:
        """Gradient of the weights from one (activation, error) pair: dz^T a for a linear
        layer, `conv2d_weight(a, ., dz)` for a convolution; the bias gets dz summed."""
        if self.kind == "linear":
            return dz.t() @ a, dz.sum(0)
        return conv2d_weight(a, self.weight_shape, dz, padding=1), dz.sum((0, 2, 3))


def _vgg(input_shape: Sequence[int], num_classes: int, widths: Sequence[int], hidden: int) -> list[Layer]:
    """VGG-style: blocks of two 3x3 convolutions + ReLU, a 2x2 max-pool after each block
    while the image is at least 2x2, then fc -> hidden -> ReLU and fc -> classes."""
    c, h, w = (int(v) for v in input_shape)
    layers: list[Layer] = []
    for width in widths:
        for j in range(2):
            post: list[str] = ["relu"]
            if j == 1 and h >= 2 and w >= 2:
                post.append("pool")
            in_shape = (c, h, w)
            if "pool" in post:
                h, w = h // 2, w // 2
            layers.append(Layer(len(layers), "conv", c, width, tuple(post), in_shape, (width, h, w)))
            c = width
    flat = c * h * w
    last = layers[-1]
    layers[-1] = Layer(
        last.index, "conv", last.in_features, last.out_features, last.post + ("flatten",), last.in_shape, (flat,)
    )
    layers.append(Layer(len(layers), "linear", flat, hidden, ("relu",), (flat,), (hidden,)))
    layers.append(Layer(len(layers), "linear", hidden, num_classes, (), (hidden,), (num_classes,)))
    return layers


def _fc(input_shape: Sequence[int], num_classes: int, hidden: int, depth: int) -> list[Layer]:
    """Fully connected: flatten, `depth` hidden layers of `hidden` units + ReLU, then classes."""
    d = math.prod(int(v) for v in input_shape)
    layers: list[Layer] = []
    width = d
    for _ in range(depth):
        layers.append(Layer(len(layers), "linear", width, hidden, ("relu",), (width,), (hidden,)))
        width = hidden
    layers.append(Layer(len(layers), "linear", width, num_classes, (), (width,), (num_classes,)))
    return layers


def build_layers(
    name: str,
    input_shape: Sequence[int],
    num_classes: int,
    *,
    widths: Sequence[int] = (16, 32),
    hidden: int = 64,
    fc_hidden: int = 256,
    fc_depth: int = 3,
) -> list[Layer]:
    """The layers of model `name` ('vgg' or 'fc') for inputs of `input_shape` (C, H, W)."""
    if name == "vgg":
        return _vgg(input_shape, num_classes, widths, hidden)
    if name == "fc":
        return _fc(input_shape, num_classes, fc_hidden, fc_depth)
    raise ValueError(f"model {name!r}: allowed: {', '.join(MODELS)}")


def model_input(layers: Sequence[Layer], x: torch.Tensor) -> torch.Tensor:
    """The data batch shaped for the first layer (flattened for a fully connected model)."""
    return x.flatten(1) if layers[0].kind == "linear" else x


def full_forward(layers: Sequence[Layer], params: Sequence[Params], x: torch.Tensor) -> torch.Tensor:
    a = model_input(layers, x)
    for layer, p in zip(layers, params):
        a = layer.after(layer.op(a, p))
    return a


@torch.no_grad()
def evaluate(
    layers: Sequence[Layer], params: Sequence[Params], x: torch.Tensor, y: torch.Tensor
) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of the model with weights `params` on (x, y)."""
    logits = full_forward(layers, params, x)
    loss = F.cross_entropy(logits, y).item()
    if not math.isfinite(loss):
        loss = math.nan
    return float((logits.argmax(1) == y).float().mean()), loss

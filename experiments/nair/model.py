"""A MobileNetV2-style network sized for small images, cut into a head and a tail.

The network is a fixed bilinear upsampling of the sensor image, then a list of *stages*: the
stem convolution, the inverted-residual bottleneck blocks of MobileNetV2 (expand 1x1
-> depthwise 3x3 -> linear 1x1 projection, residual when shape allows) and the final 1x1
convolution; global average pooling and a linear classifier follow. A split point `k` puts the upsampling and
stages `1..k` on the IoT device (the head) and the rest on the edge server (the tail); `k = 0` sends the
raw sensor data. Each stage ends in a convolution followed by batch norm: the "split layer" whose
filters give the channel importance of NAIR's eq. 8.

The 8x8 digits are upsampled to `input_size` (16 by default) inside the head, so that the two
stride-2 stages of the network still leave a 4x4 map; the sensor data that the raw-input
baseline transmits stays the 8x8 image.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "BLOCKS",
    "NUM_STAGES",
    "ConvBN",
    "Head",
    "InvertedResidual",
    "SplitNet",
    "Tail",
    "Upsample",
    "build_splitnet",
    "narrow_tail",
]

# (expansion t, output channels c, stride s) per bottleneck block: MobileNetV2's pattern
# (t=1 first, then t=6 stages, strides at the stage starts) scaled down for 16x16 inputs.
BLOCKS: tuple[tuple[int, int, int], ...] = ((1, 8, 1), (4, 16, 2), (4, 16, 1), (4, 24, 2), (4, 24, 1), (4, 32, 1))
STEM_CHANNELS = 16
LAST_CHANNELS = 128
NUM_STAGES = len(BLOCKS) + 2  # split points 1..NUM_STAGES: the stem, the bottleneck blocks, the last 1x1 convolution


class Upsample(nn.Module):
    """The fixed input stage: bilinear resize of the sensor image to `size` x `size`."""

    def __init__(self, size: int):
        super().__init__()
        self.size = int(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] == self.size and x.shape[-2] == self.size:
            return x
        return F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)


class ConvBN(nn.Module):
    """Convolution + batch norm (+ ReLU6): MobileNetV2's stem and last layer."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, act: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = act

    @property
    def out_conv(self) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
        """The convolution (and its batch norm) that produces this stage's output channels."""
        return self.conv, self.bn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.conv(x))
        return F.relu6(y) if self.act else y

    def narrowed(self, cin: int) -> ConvBN:
        """A copy taking `cin` input channels, its convolution re-initialised (CLIO multi-tail)."""
        new = copy.deepcopy(self)
        new.conv = nn.Conv2d(
            cin, self.conv.out_channels, self.conv.kernel_size, self.conv.stride, self.conv.padding, bias=False
        )
        return new


class InvertedResidual(nn.Module):
    """MobileNetV2 bottleneck: expand 1x1 (if t > 1), depthwise 3x3, linear projection 1x1.

    The residual connection is used when stride is 1 and the channel counts agree. A narrowed
    copy (fewer input channels) zero-pads its input on the residual path.
    """

    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        self.cin, self.cout, self.stride, self.expand = cin, cout, stride, expand
        self.residual = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True)]
        layers += [
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
        ]
        self.body = nn.Sequential(*layers)
        self.project = nn.Conv2d(hidden, cout, 1, bias=False)
        self.project_bn = nn.BatchNorm2d(cout)

    @property
    def out_conv(self) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
        return self.project, self.project_bn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project_bn(self.project(self.body(x)))
        if self.residual:
            if x.shape[1] < y.shape[1]:
                x = F.pad(x, (0, 0, 0, 0, 0, y.shape[1] - x.shape[1]))
            y = y + x
        return y

    def narrowed(self, cin: int) -> InvertedResidual:
        """A copy whose first convolution takes `cin` input channels, re-initialised (CLIO's
        multi-tail: the tail's first layer rebuilt for a narrower input); the rest is kept."""
        new = copy.deepcopy(self)
        first = new.body[0]
        if self.expand != 1:
            new.body[0] = nn.Conv2d(cin, first.out_channels, 1, bias=False)
        else:  # depthwise first: a depthwise conv over cin channels, then project cin -> cout
            new.body[0] = nn.Conv2d(cin, cin, 3, self.stride, 1, groups=cin, bias=False)
            new.body[1] = nn.BatchNorm2d(cin)
            new.project = nn.Conv2d(cin, self.cout, 1, bias=False)
        return new


class SplitNet(nn.Module):
    """Upsampling, stages 1..S, pooling + classifier. Split point k in 0..S: O_0 is the sensor
    image, O_k (k >= 1) the output of stage k; `head(k)` and `tail(k)` are views sharing the
    parameters."""

    def __init__(self, upsample: Upsample, stages: Sequence[nn.Module], classifier: nn.Linear):
        super().__init__()
        self.upsample = upsample
        self.stages = nn.ModuleList(stages)
        self.classifier = classifier

    @property
    def num_stages(self) -> int:
        """S: split points are 0 (raw input) .. S (after the last convolution)."""
        return len(self.stages)

    def forward_to(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """O_k, the intermediate representation after stage k, for sensor images x."""
        if k == 0:
            return x
        x = self.upsample(x)
        for stage in self.stages[:k]:
            x = stage(x)
        return x

    def forward_from(self, o: torch.Tensor, k: int) -> torch.Tensor:
        """Logits from O_k."""
        if k == 0:
            o = self.upsample(o)
        for stage in self.stages[k:]:
            o = stage(o)
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(o, 1), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_from(x, 0)

    def split_layer(self, k: int) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
        """The convolution and batch norm producing O_k (k >= 1)."""
        if not 1 <= k <= self.num_stages:
            raise ValueError(f"split={k}: allowed 1..{self.num_stages}")
        return self.stages[k - 1].out_conv

    def channels(self, k: int) -> int:
        return self.split_layer(k)[0].out_channels

    def head(self, k: int) -> Head:
        return Head(self, k)

    def tail(self, k: int) -> Tail:
        return Tail(list(self.stages[k:]), self.classifier, self.upsample if k == 0 else None)


class Head(nn.Module):
    """The IoT device's part: upsampling and stages 1..k."""

    def __init__(self, net: SplitNet, k: int):
        super().__init__()
        self.stages = nn.Sequential(net.upsample, *net.stages[:k]) if k else nn.Sequential()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(x)


class Tail(nn.Module):
    """The edge server's part: the remaining stages, pooling and the classifier."""

    def __init__(self, stages: Sequence[nn.Module], classifier: nn.Linear, upsample: Upsample | None = None):
        super().__init__()
        self.stages = nn.Sequential(*([upsample] if upsample is not None else []), *stages)
        self.classifier = classifier

    def forward(self, o: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(self.stages(o), 1), 1))


def narrow_tail(net: SplitNet, k: int, width: int) -> Tail:
    """An independent copy of the tail after split k (k >= 1) whose first stage takes `width`
    input channels, re-initialised (CLIO's multi-tail model for that width); width = all
    channels gives a plain copy."""
    tail = copy.deepcopy(net.tail(k))
    if width != net.channels(k):
        tail.stages[0] = tail.stages[0].narrowed(width)
    return tail


def build_splitnet(
    in_channels: int,
    num_classes: int,
    input_size: int = 16,
    seed: int = 0,
    blocks: Sequence[tuple[int, int, int]] = BLOCKS,
) -> SplitNet:
    """The network, initialised from `seed` (torch's global generator left untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(int(seed))
        stages: list[nn.Module] = [ConvBN(in_channels, STEM_CHANNELS, 3)]
        cin = STEM_CHANNELS
        for t, c, s in blocks:
            stages.append(InvertedResidual(cin, c, s, t))
            cin = c
        stages.append(ConvBN(cin, LAST_CHANNELS, 1))
        net = SplitNet(Upsample(input_size), stages, nn.Linear(LAST_CHANNELS, num_classes))
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
    return net

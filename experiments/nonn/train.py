"""Training: the teacher, the NoNN students (KD + activation transfer), and the baselines
(a single KD student, a single attention-transfer ATKD student, NoNN with KD alone).

The teacher's outputs on the training set are computed once (no augmentation, so they do not
change between epochs) and every student reads them by index.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from experiments.common.torchdev import device_of
from experiments.common.training import SGDSettings

from .models import WRN, NoNN

__all__ = [
    "DistillSettings",
    "TeacherTargets",
    "SGDSettings",
    "activation_transfer_loss",
    "attention",
    "fit",
    "kd_loss",
    "teacher_targets",
    "train_nonn",
    "train_single",
    "train_teacher",
]


def fit(model: nn.Module, n: int, s: SGDSettings, loss_fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """SGD (momentum, weight decay) with a cosine-annealed rate over `s.epochs` epochs of `n`
    samples in seeded random order; `loss_fn(batch_indices)` gives the batch's loss."""
    gen = torch.Generator().manual_seed(s.seed)
    opt = torch.optim.SGD(model.parameters(), lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay, nesterov=True)
    steps = s.epochs * -(-n // s.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, steps))
    model.train()
    for _ in range(s.epochs):
        order = torch.randperm(n, generator=gen)
        for i in range(0, n, s.batch_size):
            loss = loss_fn(order[i : i + s.batch_size])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()


def train_teacher(model: WRN, x: torch.Tensor, y: torch.Tensor, s: SGDSettings) -> None:
    """The teacher: cross-entropy on the labels."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(s.seed)
        fit(model, len(x), s, lambda idx: F.cross_entropy(model(x[idx]), y[idx]))


# --- losses ------------------------------------------------------------------------------
def kd_loss(
    s_logits: torch.Tensor, t_logits: torch.Tensor, y: torch.Tensor, alpha: float, temperature: float, scale: float
) -> torch.Tensor:
    """(1 - alpha) CE(y, student) + alpha * scale * KL(teacher_T || student_T); the authors'
    code uses scale = 2 T^2 (eq. 1 of the paper has scale 1 with cross-entropy, equal up to a
    constant)."""
    t = temperature
    soft = F.kl_div(F.log_softmax(s_logits / t, dim=1), F.softmax(t_logits / t, dim=1), reduction="batchmean")
    return (1 - alpha) * F.cross_entropy(s_logits, y) + alpha * scale * soft


def _unit(v: torch.Tensor) -> torch.Tensor:
    """Each sample's map flattened and scaled to unit length."""
    return F.normalize(v.flatten(1), dim=1)


def activation_transfer_loss(student_maps: list[torch.Tensor], teacher_parts: list[torch.Tensor]) -> torch.Tensor:
    """Eq. 6: sum over partitions of the squared distance between the per-sample unit-normalised
    student map and the teacher's partition map (mean over elements, as the authors' code)."""
    return sum(((_unit(s) - _unit(t)) ** 2).mean() for s, t in zip(student_maps, teacher_parts))


def attention(h: torch.Tensor) -> torch.Tensor:
    """Zagoruyko & Komodakis' spatial attention map: mean over channels of the squared
    activation, flattened and unit-normalised per sample."""
    return F.normalize(h.pow(2).mean(1).flatten(1), dim=1)


# --- the teacher's outputs, once -----------------------------------------------------------
@dataclass
class TeacherTargets:
    """The teacher's outputs on the training set, which every student learns from."""

    logits: torch.Tensor  # (N, classes)
    fconv: torch.Tensor  # (N, F, h, w): ReLU(BN(last group))
    attention: list[torch.Tensor]  # per group, (N, h_g * w_g)


@torch.no_grad()
def teacher_targets(teacher: WRN, x: torch.Tensor, batch: int = 256) -> TeacherTargets:
    """The teacher's logits, fconv maps and attention maps on `x`, `batch` images at a time
    (computed where the teacher is; on the CPU, for the students' trainings to take along)."""
    teacher.eval()
    device = device_of(teacher)
    logits, fconv, att = [], [], [[], [], []]
    for i in range(0, len(x), batch):
        groups, f = teacher.features(x[i : i + batch].to(device))
        logits.append(teacher.head(f).cpu())
        fconv.append(f.cpu())
        for g, h in enumerate(groups):
            att[g].append(attention(h).cpu())
    return TeacherTargets(torch.cat(logits), torch.cat(fconv), [torch.cat(a) for a in att])


@dataclass(frozen=True)
class DistillSettings:
    """The weights of the distillation losses."""

    alpha: float = 0.9
    temperature: float = 4.0
    kd_scale: float = 32.0  # 2 T^2 at T = 4
    beta: float = 1.0e4  # activation transfer (NoNN)
    at_beta: float = 1.0e3  # attention transfer (ATKD)


def train_nonn(
    model: NoNN,
    x: torch.Tensor,
    y: torch.Tensor,
    targets: TeacherTargets,
    order: list[list[int]],
    s: SGDSettings,
    d: DistillSettings,
    activation_transfer: bool = True,
) -> None:
    """Train the NoNN jointly: KD on the aggregated logits, plus (unless ablated) activation
    transfer of each student's map onto its partition `order[i]` of the teacher's fconv."""
    parts = [torch.as_tensor(p, dtype=torch.long) for p in order]

    def loss_fn(idx: torch.Tensor) -> torch.Tensor:
        logits, maps = model.forward_with_maps(x[idx])
        loss = kd_loss(logits, targets.logits[idx], y[idx], d.alpha, d.temperature, d.kd_scale)
        if activation_transfer:
            f = targets.fconv[idx]
            loss = loss + d.beta * activation_transfer_loss(maps, [f[:, p] for p in parts])
        return loss

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(s.seed)
        fit(model, len(x), s, loss_fn)


def train_single(
    model: WRN,
    x: torch.Tensor,
    y: torch.Tensor,
    targets: TeacherTargets,
    s: SGDSettings,
    d: DistillSettings,
    attention_transfer: bool,
) -> None:
    """A single student: KD, plus attention transfer at every group (ATKD) when asked."""

    def loss_fn(idx: torch.Tensor) -> torch.Tensor:
        groups, f = model.features(x[idx])
        loss = kd_loss(model.head(f), targets.logits[idx], y[idx], d.alpha, d.temperature, d.kd_scale)
        if attention_transfer:
            at = sum(((attention(h) - targets.attention[g][idx]) ** 2).mean() for g, h in enumerate(groups))
            loss = loss + d.at_beta / 2 * at
        return loss

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(s.seed)
        fit(model, len(x), s, loss_fn)

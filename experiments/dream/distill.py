"""Knowledge distillation without labels: the student matches the teacher's softened outputs
on whatever images it is given (Hinton et al.'s KL term alone, scaled by T^2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from experiments.common.torchdev import device_of
from experiments.nonn.train import SGDSettings, fit

__all__ = ["distill", "teacher_logits"]


@torch.no_grad()
def teacher_logits(teacher: torch.nn.Module, x: torch.Tensor, batch: int = 512) -> torch.Tensor:
    """The teacher's logits on `x`, computed where the teacher is, on the CPU."""
    teacher.eval()
    device = device_of(teacher)
    return torch.cat([teacher(x[i : i + batch].to(device)).cpu() for i in range(0, len(x), batch)])


def distill(student: torch.nn.Module, x: torch.Tensor, logits: torch.Tensor, s: SGDSettings, temperature: float):
    """Train `student` in place on images `x` against the teacher's `logits`."""
    t = temperature
    soft = F.softmax(logits / t, dim=1)

    def loss(idx: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(student(x[idx]) / t, dim=1)
        return F.kl_div(log_p, soft[idx], reduction="batchmean") * t * t

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(s.seed)
        fit(student, len(x), s, loss)
    return None

"""The tables of a NoNN job that need no clock: the knowledge partition, the students against the
per-device budgets, and every model's test accuracy and size (partition.csv, students.csv,
comparison.csv)."""

from __future__ import annotations

import math
from dataclasses import asdict

import pandas as pd
import torch

from experiments.common.data import Dataset
from experiments.common.metrics import accuracy, count_params

from .budget import forward_flops
from .partition import KnowledgePartition
from .pipeline import ACCURACY_BATCH, TrainedModels

__all__ = ["comparison_table", "partition_table", "students_table"]


def partition_table(kp: KnowledgePartition) -> pd.DataFrame:
    """P0 (dropped) and each student's partition: its size and teacher filter indices."""
    rows = [
        {"partition": "P0 (dropped)", "student": -1, "filters": len(kp.p0), "filter_ids": " ".join(map(str, kp.p0))}
    ]
    rows += [
        {"partition": f"P{i + 1}", "student": i, "filters": len(p), "filter_ids": " ".join(map(str, p))}
        for i, p in enumerate(kp.parts)
    ]
    return pd.DataFrame(rows)


def students_table(tr: TrainedModels) -> pd.DataFrame:
    """Each NoNN student's size, memory and FLOPs against the budgets, and its width."""
    return pd.DataFrame(
        [
            {
                **asdict(c),
                "width_multiplier": tr.student_width,
                "widths": " ".join(map(str, tr.nonn.spec.widths)),
                "fits_budget": c.fits,
            }
            for c in tr.costs
        ]
    )


def comparison_table(
    tr: TrainedModels, data: Dataset, bytes_per_param: float, memory_budget_bytes: int, flop_budget: float
) -> pd.DataFrame:
    """Every model's test accuracy, parameters and FLOPs per device, and whether it fits the
    per-device budgets (a NoNN's figures are those of its largest student)."""
    x1 = torch.zeros(1, *data.input_shape)
    k = len(tr.nonn.sizes)
    student_params, student_flops = max(c.params for c in tr.costs), max(c.flops for c in tr.costs)
    models = [("teacher", tr.teacher, count_params(tr.teacher), forward_flops(tr.teacher, x1), 1)]
    models.append(("NoNN", tr.nonn, student_params, student_flops, k))
    if tr.nonn_kd is not None:
        models.append(("NoNN, KD only", tr.nonn_kd, student_params, student_flops, k))
        for name, m in (("KD student", tr.kd), ("ATKD student", tr.atkd)):
            models.append((name, m, count_params(m), forward_flops(m, x1), 1))
    return pd.DataFrame(
        [
            {
                "model": name,
                "accuracy": accuracy(m, data.x_test, data.y_test, ACCURACY_BATCH),
                "total_params": count_params(m),
                "params_per_device": p,
                "flops_per_device": f,
                "devices": d,
                "memory_per_device_bytes": int(math.ceil(p * bytes_per_param)),
                "memory_budget_bytes": memory_budget_bytes,
                "fits_budget": bool(p * bytes_per_param <= memory_budget_bytes and f <= flop_budget),
            }
            for name, m, p, f, d in models
        ]
    )

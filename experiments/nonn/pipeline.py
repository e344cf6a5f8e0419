"""Every model of a NoNN job, trained or loaded from the model cache: the teacher, the partition
of its knowledge, the students sized to the per-device budgets, the NoNN per activation-transfer
weight and the baselines (the NoNN with KD alone, a single KD student, a single ATKD student per
attention weight); of each weight search, the model best on the validation set.

No clock and no simulator: the caller passes the `workload.*` settings, an executor (anything
with `map(fn, calls, seeds)` and `torch_threads`, as `sim.backends` makes) and `streams(name)`,
the job's named random generators.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from experiments.common.cache import Training, train_cached
from experiments.common.data import Dataset
from experiments.common.metrics import accuracy, count_params
from experiments.common.torchdev import device_of

from .budget import StudentCost, match_width, size_students
from .models import WRN, NoNN, StudentSpec, scaled_widths
from .partition import KnowledgePartition, partition_filters
from .train import (
    DistillSettings,
    SGDSettings,
    TeacherTargets,
    teacher_targets,
    train_nonn,
    train_single,
    train_teacher,
)

__all__ = [
    "ACCURACY_BATCH",
    "TrainedModels",
    "nonn_teacher",
    "p0_accuracy",
    "StudentData",
    "seeded",
    "split_validation",
    "train_models",
]

ACCURACY_BATCH = 512  # images per forward pass when scoring a model

Streams = Callable[[str], np.random.Generator]


@dataclass
class TrainedModels:
    """The models of a NoNN job (in eval mode) and what was decided on the way to them."""

    teacher: WRN
    nonn: NoNN
    nonn_kd: NoNN | None
    kd: WRN | None
    atkd: WRN | None
    partition: KnowledgePartition
    costs: list[StudentCost]
    student_width: float
    baseline_width: float | None
    teacher_val_accuracy: float
    p0_val_accuracy: float
    beta: float
    at_beta: float | None
    beta_search: pd.DataFrame


def split_validation(data: Dataset, fraction: float, rng: np.random.Generator):
    """(x_train, y_train, x_val, y_val): `fraction` of the training set, drawn by `rng`, held out."""
    perm = torch.as_tensor(rng.permutation(len(data.x_train)))
    nv = max(1, round(len(perm) * fraction))
    v, t = perm[:nv], perm[nv:]
    return data.x_train[t], data.y_train[t], data.x_train[v], data.y_train[v]


def seeded(seed: int, build: Callable[[], nn.Module]) -> nn.Module:
    """`build()` with torch's generator seeded by `seed`, the global one left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


@torch.no_grad()
def p0_accuracy(teacher: WRN, x: torch.Tensor, y: torch.Tensor, p0: Sequence[int]) -> float:
    """Validation accuracy with the P0 filters of the fconv zeroed."""
    teacher.eval()
    device = device_of(teacher)
    mask = torch.ones(teacher.widths[2], device=device)
    mask[list(p0)] = 0.0
    _, f = teacher.features(x.to(device))
    return int((teacher.head(f * mask[None, :, None, None]).argmax(1) == y.to(device)).sum()) / len(y)


@dataclass(frozen=True)
class _Job:
    """What every training of a job shares."""

    n: Any  # the workload.* settings
    x_train: torch.Tensor
    y_train: torch.Tensor
    channels: int
    classes: int
    sgd: dict[str, Any]  # the SGDSettings fields every model shares (also part of every cache key)
    streams: Streams
    executor: Any
    cache_dir: Any

    def seed_of(self, name: str) -> int:
        """The torch seed of the model `name` (its initial weights and batch order)."""
        return int(self.streams(name).integers(2**31))

    def settings(self, epochs: int, seed: int) -> SGDSettings:
        """The SGD settings of one model: `epochs`, its `seed`, the rest shared."""
        return SGDSettings(epochs, seed=seed, **self.sgd)

    def train(self, trainings: list[Training]) -> None:
        """Train the models of `trainings` in place, or load them from the cache."""
        train_cached(self.executor, self.cache_dir, trainings)


def _teacher(job: _Job, data_key: dict[str, Any]) -> tuple[WRN, dict[str, Any]]:
    """The trained teacher and its cache key (which every student's key includes)."""
    n = job.n
    seed = job.seed_of("nonn-teacher")
    teacher = seeded(seed, lambda: WRN(n.teacher_depth, scaled_widths(n.teacher_width), job.channels, job.classes))
    key = {**data_key, "depth": n.teacher_depth, "width": n.teacher_width, "epochs": n.teacher_epochs, **job.sgd}
    settings = job.settings(n.teacher_epochs, seed)
    job.train([Training("nonn-teacher", key, teacher, train_teacher, (job.x_train, job.y_train, settings), seed=seed)])
    teacher.eval()
    return teacher, key


def _partition(job: _Job, teacher: WRN, x_val: torch.Tensor, y_val: torch.Tensor) -> KnowledgePartition:
    """The teacher's fconv filters partitioned by their activity on the validation set; P0 the
    largest group whose removal changes the teacher's validation accuracy by less than
    `p0_epsilon` (the paper's problem 2)."""
    n = job.n
    with torch.no_grad():
        _, f_val = teacher.features(x_val.to(device_of(teacher)))
    activity = f_val.mean(dim=(2, 3)).cpu().numpy()
    base = accuracy(teacher, x_val, y_val, ACCURACY_BATCH)

    def accept(p0: list[int]) -> bool:
        return abs(p0_accuracy(teacher, x_val, y_val, p0) - base) < n.p0_epsilon

    return partition_filters(
        activity,
        n.num_students,
        rule=n.rule,
        top=n.top_filters,
        percentile=n.edge_percentile,
        resolution=n.resolution,
        seed=job.seed_of("nonn-louvain"),
        balance=n.balance,
        accept=accept,
    )


@dataclass(frozen=True)
class _Students:
    """How each student model of a job is built and trained (one `Training` each)."""

    job: _Job
    spec: StudentSpec
    partition: KnowledgePartition
    targets: TeacherTargets
    distill: DistillSettings
    key: dict[str, Any]  # what decides the weights of every student

    def nonn(self, name: str, at: bool, beta: float) -> Training:
        """A NoNN: KD, plus activation transfer with weight `beta` when `at`."""
        j, kp = self.job, self.partition
        seed = j.seed_of(name)
        model = seeded(seed, lambda: NoNN(self.spec, kp.sizes, j.channels, j.classes))
        args = (
            j.x_train,
            j.y_train,
            self.targets,
            [list(p) for p in kp.parts],
            j.settings(j.n.student_epochs, seed),
            replace(self.distill, beta=beta),
            at,
        )
        return Training(
            name,
            {**self.key, "activation_transfer": at, "beta": beta if at else None},
            model,
            train_nonn,
            args,
            seed=seed,
        )

    def single(self, name: str, at: bool, beta: float, width: float) -> Training:
        """A single WRN student of `width`: KD, plus attention transfer with weight `beta` when `at`."""
        j = self.job
        seed = j.seed_of(name)
        model = seeded(seed, lambda: WRN(j.n.student_depth, scaled_widths(width), j.channels, j.classes))
        args = (
            j.x_train,
            j.y_train,
            self.targets,
            j.settings(j.n.student_epochs, seed),
            replace(self.distill, at_beta=beta),
            at,
        )
        return Training(
            name,
            {**self.key, "width": width, "attention_transfer": at, "at_beta": beta if at else None},
            model,
            train_single,
            args,
            seed=seed,
        )


def _students(
    job: _Job,
    teacher: WRN,
    teacher_key: dict[str, Any],
    kp: KnowledgePartition,
    spec: StudentSpec,
    data_key: dict[str, Any] | None,
) -> _Students:
    """The students of partition `kp` with architecture `spec`, distilled from `teacher` on
    `job.x_train` (named by `data_key` in the cache keys when it is not the teacher's own)."""
    n = job.n
    targets = teacher_targets(teacher, job.x_train)
    kd_scale = 2 * n.temperature**2 if n.kd_scale is None else n.kd_scale
    distill = DistillSettings(n.alpha, n.temperature, kd_scale, n.beta, n.at_beta)
    key = {
        "teacher": teacher_key,
        "partition": [list(p) for p in kp.parts],
        "spec": asdict(spec),
        "epochs": n.student_epochs,
        "alpha": n.alpha,
        "temperature": n.temperature,
        "kd_scale": kd_scale,
        **job.sgd,
    }
    if data_key is not None:
        key["student_data"] = data_key
    return _Students(job, spec, kp, targets, distill, key)


def _student_trainings(students: _Students) -> tuple[list[Training], list[float], list[float], float | None]:
    """(every student model to train, in order: the NoNN per `beta_search` weight, then with
    `baselines` the KD-only NoNN, the KD student and the ATKD student per `at_beta_search`
    weight; the NoNN weights; the ATKD weights; the single students' width)."""
    n, j = students.job.n, students.job
    betas = list(n.beta_search) or [n.beta]
    trainings = [students.nonn("nonn-students", True, b) for b in betas]
    width, at_betas = None, []
    if n.baselines:  # the single students as large as the NoNN (whose size training does not change)
        width = match_width(n.student_depth, count_params(trainings[0].model), j.channels, j.classes)
        at_betas = list(n.at_beta_search) or [n.at_beta]
        trainings += [
            students.nonn("nonn-students-kd", False, 0.0),
            students.single("nonn-kd-student", False, 0.0, width),
        ]
        trainings += [students.single("nonn-atkd-student", True, b, width) for b in at_betas]
    return trainings, betas, at_betas, width


def _best(
    name: str,
    candidates: list[float],
    trained: list[nn.Module],
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    search: list[dict],
) -> tuple[nn.Module, float]:
    """Of one model per weight, the best on the validation set (ties: the first), and its
    weight; each candidate's validation accuracy is appended to `search`."""
    found = None
    for beta, model in zip(candidates, trained):
        val = accuracy(model, x_val, y_val, ACCURACY_BATCH)
        search.append({"model": name, "beta": beta, "val_accuracy": val})
        if found is None or val > found[2]:
            found = (model, beta, val)
    return found[0], found[1]


def _job_and_teacher(n, data: Dataset, dataset_key: dict[str, Any], seed: int, streams: Streams, executor, cache_dir):
    x_tr, y_tr, x_val, y_val = split_validation(data, n.val_fraction, streams("nonn-validation"))
    sgd = dict(batch_size=n.batch_size, lr=n.lr, momentum=n.momentum, weight_decay=n.weight_decay)
    job = _Job(n, x_tr, y_tr, data.input_shape[0], data.num_classes, sgd, streams, executor, cache_dir)
    data_key = {**dataset_key, "n_train": len(x_tr), "seed": seed, "val_fraction": n.val_fraction}
    teacher, teacher_key = _teacher(job, data_key)
    return job, teacher, teacher_key, x_val, y_val


def nonn_teacher(
    n, data: Dataset, dataset_key: dict[str, Any], seed: int, streams: Streams, executor, cache_dir
) -> tuple[WRN, dict[str, Any], torch.Tensor, torch.Tensor]:
    """The NoNN job's teacher (the same cache entry; `n` needs its teacher_* and SGD settings),
    its cache key, and the training images and labels it learnt from (the validation split held out)."""
    job, teacher, key, _, _ = _job_and_teacher(n, data, dataset_key, seed, streams, executor, cache_dir)
    return teacher, key, job.x_train, job.y_train


StudentData = Callable[[WRN, dict[str, Any], torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, Any]]


def train_models(
    n,
    data: Dataset,
    dataset_key: dict[str, Any],
    seed: int,
    streams: Streams,
    executor,
    cache_dir,
    student_data: StudentData | None = None,
) -> TrainedModels:
    """Every model of the job with settings `n`, trained (or loaded from `cache_dir`) on `executor`:
    the teacher first (the students learn from it), then every student model at once, since they
    are independent of one another (in parallel on a parallel back end). `dataset_key`: what
    names the data in the cache keys; `seed`: the job's seed, also part of them.

    `student_data(teacher, teacher_key, x_train, y_train)`, when given, returns the images and
    labels every student and baseline learns from instead of the teacher's training set, and
    what names them in the cache keys (Dream Distillation's dreams). The partition and the
    weight searches stay on the validation split, which the data owner holds."""
    job, teacher, teacher_key, x_val, y_val = _job_and_teacher(n, data, dataset_key, seed, streams, executor, cache_dir)
    data_key = None
    if student_data is not None:
        x, y, data_key = student_data(teacher, teacher_key, job.x_train, job.y_train)
        job = replace(job, x_train=x, y_train=y)
    kp = _partition(job, teacher, x_val, y_val)
    spec, width, costs = size_students(
        n.student_depth,
        kp.sizes,
        data.input_shape,
        job.classes,
        memory_budget_bytes=n.memory_budget_bytes,
        bytes_per_param=n.bytes_per_param,
        flop_budget=n.flop_budget,
        common_group=n.common_group,
        width=n.student_width,
    )
    trainings, betas, at_betas, b_width = _student_trainings(_students(job, teacher, teacher_key, kp, spec, data_key))
    job.train(trainings)
    models = [t.model.eval() for t in trainings]
    search: list[dict] = []
    nonn, beta = _best("NoNN", betas, models[: len(betas)], x_val, y_val, search)
    nonn_kd = kd = atkd = at_beta = None
    if n.baselines:
        nonn_kd, kd = models[len(betas) : len(betas) + 2]
        atkd, at_beta = _best("ATKD student", at_betas, models[len(betas) + 2 :], x_val, y_val, search)
    return TrainedModels(
        teacher,
        nonn,
        nonn_kd,
        kd,
        atkd,
        kp,
        costs,
        width,
        b_width,
        accuracy(teacher, x_val, y_val, ACCURACY_BATCH),
        p0_accuracy(teacher, x_val, y_val, kp.p0),
        beta,
        at_beta,
        pd.DataFrame(search),
    )

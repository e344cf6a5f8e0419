"""The Dream Distillation job: the NoNN teacher (cached), the data owner's metadata, the dreams,
the students distilled from each source, then the compression on the simulated network.

`run(cfg, out_dir)` writes metadata.csv, students.csv, phases.csv, summary.csv, timeline.csv
and the plots (docs/dream.md). The dreams and every student are cached, keyed by what decides
them. The dream path runs sealed: it cannot read the real training images
(`experiments.dream.guard`).
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

import pandas as pd
import torch

from devices import CATALOGUE
from experiments.common.cache import Training, cache_key, train_cached
from experiments.common.data import load_dataset
from experiments.common.metrics import accuracy, count_params
from experiments.common.training import SGDSettings
from experiments.dream.distill import distill, teacher_logits
from experiments.dream.guard import RealImages
from experiments.dream.sources import alternate_images, random_images
from experiments.nonn.models import WRN, scaled_widths
from experiments.nonn.pipeline import nonn_teacher, seeded
from sim.backends import make_executor
from sim.config import Config, ConfigError
from sim.dream.dreams import dreams_of
from sim.dream.timeline import simulate
from sim.meter import WorkMeter
from sim.net import TIMELINE_COLUMNS
from sim.report import write_csvs, write_json, write_rows
from sim.seeding import stream

__all__ = ["run"]


def _distill_cost(student: WRN, teacher: WRN, batch: torch.Tensor, epochs: int) -> tuple[int, int]:
    """(FLOPs, images) of a distillation on `batch`: the teacher's logits once per image, the
    student's forward and backward per image and epoch; scaled to a source's size by the caller."""
    with WorkMeter() as m:
        teacher_logits(teacher, batch)
    t = m.flops
    with WorkMeter() as m:
        student.train()
        student(batch).sum().backward()
    student.zero_grad(set_to_none=True)
    student.eval()
    return t + epochs * m.flops, len(batch)


def _trainings(cfg: Config, teacher: WRN, teacher_key: dict, images: dict, dream_stats: dict, shape, classes):
    """A distillation per source and student width (cached), and the FLOPs of each (counted once
    per width: they do not depend on what the images show)."""
    d, trainings, flops, costs = cfg.workload, [], {}, {}
    batch = next(iter(images.values()))[:64]
    for s, x in images.items():
        logits = teacher_logits(teacher, x)
        for width in d.student_widths:
            seed = int(stream(cfg.seed, "dream-student", s, str(width)).integers(2**31))
            student = seeded(seed, lambda w=width: WRN(d.student_depth, scaled_widths(w), shape[0], classes))
            settings = SGDSettings(d.student_epochs, d.lr, d.batch_size, d.momentum, d.weight_decay, seed)
            key = {"teacher": teacher_key, "source": s, "n": len(x), "width": width, "depth": d.student_depth}
            key |= {"epochs": d.student_epochs, "temperature": d.temperature, "seed": cfg.seed}
            if s == "dream":
                key["dreams"] = cache_key(dream_stats, cfg.torch_threads)
            trainings.append(
                Training("dream-student", key, student, distill, (x, logits, settings, d.temperature), seed=seed)
            )
            if width not in costs:
                costs[width] = _distill_cost(student, teacher, batch, d.student_epochs)
            per_batch, size = costs[width]
            flops[(s, width)] = int(per_batch * len(x) / size)
    return trainings, flops


@torch.no_grad()
def _classes_named(teacher, x: torch.Tensor) -> int:
    """How many classes the teacher's argmax gives over the images `x` (1: it calls them all one thing)."""
    return int(teacher_logits(teacher, x).argmax(1).unique().numel())


@torch.no_grad()
def _agreement(teacher, x: torch.Tensor, labels: torch.Tensor) -> float:
    """The fraction of the dreams `x` the teacher puts in the class each was dreamed for (`labels`)."""
    return float((teacher_logits(teacher, x).argmax(1) == labels).float().mean())


def run(cfg: Config, out_dir, *, in_sweep: bool = False) -> pd.DataFrame:
    out_dir, d = Path(out_dir), cfg.workload
    try:
        data = load_dataset(cfg.dataset.name, path=cfg.dataset.path, seed=cfg.seed, num_samples=cfg.dataset.num_samples)
    except (FileNotFoundError, ValueError) as exc:
        raise ConfigError(str(exc).splitlines()[0]) from None
    shape, classes = tuple(data.input_shape), data.num_classes
    dataset_key = {"dataset": cfg.dataset.name, "path": cfg.dataset.path, "num_samples": cfg.dataset.num_samples}
    wall, t0 = {}, time.perf_counter()
    with make_executor(cfg) as executor:
        streams = functools.partial(stream, cfg.seed)
        teacher, teacher_key, x_tr, y_tr = nonn_teacher(
            d, data, dataset_key, cfg.seed, streams, executor, cfg.cache_dir
        )
        real = RealImages(x_tr, y_tr)
        # the owner's metadata; the compressing server's dreams from it, never an image of the owner's
        dr = dreams_of(
            d, cfg.seed, cfg.cache_dir, cfg.torch_threads, teacher, teacher_key, real, classes, shape, cfg.torch_device
        )
        n = len(dr.images)
        sources = {
            "random": lambda: random_images(n, shape, stream(cfg.seed, "dream-random")),
            "dream": lambda: dr.images,
            "alternate": lambda: alternate_images(n, shape, stream(cfg.seed, "dream-alternate")),
            "real": lambda: real.x,
        }
        images = {s: sources[s]() for s in d.sources}
        trainings, flops = _trainings(cfg, teacher, teacher_key, images, dr.stats, shape, classes)
        train_cached(executor, cfg.cache_dir, trainings)  # independent: in parallel on a parallel back end
    wall["compute_s"] = round(time.perf_counter() - t0, 3)
    phases, timeline = simulate(cfg, CATALOGUE[d.owner], CATALOGUE[d.server], dr.meta.nbytes, dr.stats["flops"], flops)
    students = _students(trainings, phases, flops, accuracy(teacher, data.x_test, data.y_test), data)
    metadata = pd.DataFrame(
        [
            {
                "classes": classes,
                "clusters": d.clusters,
                "components": d.components,
                "sample_fraction": d.sample_fraction,
                "sample_images": len(dr.sample_y),
                "sample_bytes": int(dr.sample_x.numel() + dr.sample_y.numel()),  # 8-bit pixels, a byte per label
                "metadata_bytes": dr.meta.nbytes,
                "dream_images": n,
                "dream_flops": dr.stats["flops"],
                "dream_activation_error": dr.stats["activation_error"],
                # what the teacher makes of what it will teach from, and how the dreams look beside
                # the owner's images (why a source teaches or not: docs/dream.md)
                "dream_teacher_agreement": _agreement(teacher, dr.images, dr.labels),
                "random_teacher_classes": _classes_named(teacher, images["random"]) if "random" in images else None,
                "dream_pixel_mean": float(dr.images.float().mean()),
                "sample_pixel_mean": float(dr.sample_x.float().mean()),
            }
        ]
    )
    phase_rows = pd.DataFrame([vars(p) for p in phases])
    summary = _summary(cfg, students, metadata, phase_rows)
    tables = {"metadata.csv": metadata, "students.csv": students, "phases.csv": phase_rows, "summary.csv": summary}
    write_csvs(out_dir, tables)
    write_rows(timeline, out_dir / "timeline.csv", TIMELINE_COLUMNS)
    write_json({**executor.timings(), "wall_s": wall}, out_dir / "wallclock.json")
    if cfg.plots:
        from sim.dream.report import plot

        plot(out_dir, students, dr.images, dr.stats["labels"], teacher, dr.sample_x, dr.sample_y, dr.meta, classes)
    if cfg.progress:
        print(students.pivot(index="source", columns="student_width", values="test_accuracy").round(3).to_string())
    return summary


def _students(trainings: list[Training], phases, flops: dict, teacher_acc: float, data) -> pd.DataFrame:
    by_key = {(p.source, p.student_width): p for p in phases if p.phase == "distill"}
    rows = []
    for t in trainings:
        s, width = t.key["source"], t.key["width"]
        p = by_key.get((s, width))
        rows.append(
            {
                "source": s,
                "student_width": width,
                "student_depth": t.key["depth"],
                "params": count_params(t.model),
                "images": t.key["n"],
                "test_accuracy": accuracy(t.model.eval(), data.x_test, data.y_test),
                "teacher_test_accuracy": teacher_acc,
                "distill_flops": flops[(s, width)],
                "server_s": p.end_s - p.start_s if p else float("nan"),
                "server_energy_j": p.server_energy_j if p else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def _summary(cfg: Config, students: pd.DataFrame, metadata: pd.DataFrame, phases: pd.DataFrame) -> pd.DataFrame:
    row = {
        "seed": cfg.seed,
        "dataset": cfg.dataset.name,
        "teacher_test_accuracy": float(students.teacher_test_accuracy.iloc[0]),
        "metadata_bytes": int(metadata.metadata_bytes.iloc[0]),
        "sample_bytes": int(metadata.sample_bytes.iloc[0]),
        "metadata_s": float((phases.end_s - phases.start_s)[phases.phase == "metadata"].sum()),
        "generate_s": float((phases.end_s - phases.start_s)[phases.phase == "generate"].sum()),
        "distill_s": float((phases.end_s - phases.start_s)[phases.phase == "distill"].sum()),
        "server_energy_j": float(phases.server_energy_j.sum()),
        "owner_energy_j": float(phases.owner_energy_j.sum()),
    }
    for r in students.itertuples():
        row[f"accuracy_{r.source}_w{r.student_width:g}"] = r.test_accuracy
    return pd.DataFrame([row])

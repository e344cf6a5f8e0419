"""The offload job: train the classifier (real, cached), measure what one inference costs, run
each mode's timeline, then score the answers the sensor got with the real model.

`run(cfg, out_dir)` writes results.csv (one row per mode and image), summary.csv (one row per
mode; a sweep's comparison.csv gathers them), timeline_<mode>.csv (the sensor's and the server's
states, each mode its own system on its own clock; with `plots`, a Gantt chart each) and, outside
a sweep, comparison.csv.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from channels import flip_bits
from devices import CATALOGUE
from experiments.common.cache import Training, train_cached
from experiments.common.data import Dataset, load_digits
from experiments.common.models import build_model
from experiments.common.torchdev import device_of
from experiments.offload.classifier import decode_images, encode_images, predict, train_classifier
from sim.backends import make_executor
from sim.config import Config, check_workload
from sim.meter import WorkMeter
from sim.net import TIMELINE_COLUMNS
from sim.offload.settings import OffloadSettings
from sim.offload.timeline import MODES, Answer, Costs, offload_network, simulate
from sim.report import channel_columns, frame, plot_timeline, write_csv, write_csvs, write_rows

__all__ = ["inference_costs", "run"]


def _trained_model(cfg: Config, data: Dataset) -> torch.nn.Module:
    """The MLP trained on the digits' training set: from the model cache, or trained now."""
    s: OffloadSettings = cfg.workload
    model = build_model("mlp", data.input_shape, data.num_classes, seed=cfg.seed, hidden=s.hidden)
    hyper = {"epochs": s.epochs, "lr": s.lr, "batch_size": s.batch_size, "seed": cfg.seed}
    key = {"hidden": s.hidden, **hyper, "train_samples": len(data.y_train)}
    with make_executor(cfg) as executor:
        train_cached(
            executor,
            cfg.cache_dir,
            [Training("offload-mlp", key, model, train_classifier, (data.x_train, data.y_train), hyper, seed=cfg.seed)],
        )
    return model


def inference_costs(model: torch.nn.Module, x: torch.Tensor) -> Costs:
    """FLOPs of classifying one image (counted by PyTorch under `WorkMeter`) and its payload bytes."""
    with WorkMeter() as meter, torch.no_grad():
        model(x[:1].to(device_of(model)))  # where the model is: the same figures on any device
    return Costs(flops=meter.flops, image_bytes=int(encode_images(x[:1]).shape[1]))


def _labels_received(model: torch.nn.Module, x: torch.Tensor, answers: list[Answer]) -> np.ndarray:
    """The label the sensor ends up with for each image: its own prediction (local), or the
    server's prediction on the image as it arrived, as that label arrived (offload)."""
    if answers[0].mode == "local":
        return predict(model, x)
    payload = encode_images(x)
    for a in answers:
        flip_bits(payload[a.image], a.image_flips)
    labels = predict(model, decode_images(payload, tuple(x.shape[1:]))).astype(np.uint8)
    for a in answers:
        flip_bits(labels[a.image : a.image + 1], a.answer_flips)
    return labels.astype(np.int64)


def _result_rows(answers: list[Answer], labels: np.ndarray, y: np.ndarray) -> list[dict]:
    """One row per image: its label, the answer the sensor got (if any), and what it cost."""
    return [
        {
            "mode": a.mode,
            "image": a.image,
            "label": int(y[a.image]),
            "answered": a.answered,
            "answer": int(labels[a.image]),
            "correct": a.answered and bool(labels[a.image] == y[a.image]),
            "latency_s": a.latency_s,
            "device_energy_j": a.device_energy_j,
            "bytes_sent": a.bytes_sent,
            "retransmissions": a.retransmissions,
            "bits_flipped": len(a.image_flips) + len(a.answer_flips),
        }
        for a in answers
    ]


def _summary(cfg: Config, costs: Costs, results: pd.DataFrame) -> pd.DataFrame:
    """One row per mode: the settings a sweep varies, then the outcomes."""
    s, c = cfg.workload, cfg.channel
    settings = {
        "workload": s.name,
        "seed": cfg.seed,
        "device": s.device,
        "server": s.server,
        "images": s.images,
        "period_s": s.period_s,
        **channel_columns(c),
        "flops_per_inference": costs.flops,
        "image_bytes": costs.image_bytes,
    }
    rows = [
        {
            **settings,
            "mode": mode,
            "delivered_fraction": g["answered"].mean(),
            "accuracy": g["correct"].mean(),
            "mean_latency_s": g["latency_s"].mean(),
            "max_latency_s": g["latency_s"].max(),
            "mean_device_energy_j": g["device_energy_j"].mean(),
            "bytes_sent": int(g["bytes_sent"].sum()),
            "retransmissions": int(g["retransmissions"].sum()),
            "bits_flipped": int(g["bits_flipped"].sum()),
        }
        for mode, g in results.groupby("mode", sort=False)
    ]
    return frame(rows)


def run(cfg: Config, out_dir: Path | str, *, in_sweep: bool = False) -> pd.DataFrame:
    """The whole job; returns the summary rows."""
    s: OffloadSettings = cfg.workload
    data = load_digits(seed=cfg.seed)
    check_workload(s.images <= len(data.y_test), "images", s.images, f"at most {len(data.y_test)} (the test set)")
    model = _trained_model(cfg, data)
    x, y = data.x_test[: s.images], data.y_test[: s.images].numpy()
    costs, device, server = inference_costs(model, x), CATALOGUE[s.device], CATALOGUE[s.server]
    rows = []
    for mode in MODES:
        system = offload_network(cfg, device, server)
        answers = simulate(mode, costs, s.images, s.period_s, device, system, cfg.seed)
        rows += _result_rows(answers, _labels_received(model, x, answers), y)
        timeline = system[0].timeline.sorted()
        write_rows(timeline, Path(out_dir) / f"timeline_{mode}.csv", TIMELINE_COLUMNS)
        if cfg.plots:
            plot_timeline(timeline, Path(out_dir) / f"timeline_{mode}.png", title=f"{mode}: sensor and server states")
    results = frame(rows)
    summary = _summary(cfg, costs, results)
    write_csvs(Path(out_dir), {"results.csv": results, "summary.csv": summary})
    if not in_sweep:
        write_csv(summary, Path(out_dir) / "comparison.csv")
    return summary

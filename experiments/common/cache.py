"""Trained models on disk, keyed by everything that decides their weights.

A sweep over link quality or fleet size reuses the same teacher (NoNN) or original model
(NAIR) instead of retraining it. `train_cached(executor, cache_dir, trainings)` looks every
model up first, loads the weights of those whose key has a file, trains the others in one
`executor.map` (in parallel on `backend=ray`), loads what they return and stores it. The key is
a JSON-able dict (settings, seed, data size), plus the torch version and thread count; training
is deterministic, so a cache hit gives the weights a fresh run would have trained.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from experiments.common.files import atomic_path
from experiments.common.torchdev import cpu_state_dict, to_torch_device, use_torch_device

__all__ = [
    "Training",
    "cache_key",
    "device_key",
    "load_model",
    "save_torch",
    "store_model",
    "train_cached",
    "trained_state",
]


def device_key(torch_device: str | None) -> str | None:
    """What of the torch device changes trained weights: None on the CPU (the keys of the CPU
    stay what they were); a GPU's kind and model, whose kernels decide the float roundings."""
    if torch_device is None or torch.device(torch_device).type == "cpu":
        return None
    device = torch.device(torch_device)
    if device.type == "cuda":
        return f"cuda {torch.cuda.get_device_name(device)}"
    return device.type


def cache_key(parts: dict[str, Any], threads: int | None = None, torch_device: str | None = None) -> str:
    """A short stable digest of `parts`, plus what else changes trained weights: the torch
    version, the intra-op thread count the training runs with (the order of float
    summations; `threads`, or this process's count when None) and the torch device, unless the CPU."""
    threads = threads or torch.get_num_threads()
    extra = {"torch": torch.__version__, "threads": threads}
    device = device_key(torch_device)
    if device is not None:
        extra["torch_device"] = device
    text = json.dumps({**parts, **extra}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _path(
    cache_dir: str | os.PathLike, kind: str, key: dict[str, Any], threads: int | None, torch_device: str | None
) -> Path:
    return Path(cache_dir) / f"{kind}-{cache_key(key, threads, torch_device)}.pt"


def load_model(
    cache_dir: str | os.PathLike | None,
    kind: str,
    key: dict[str, Any],
    model: torch.nn.Module,
    threads: int | None = None,
    torch_device: str | None = None,
) -> dict[str, Any] | None:
    """Load `model`'s weights from the cache; the metadata stored with them, or None on a miss
    (no cache, no file, or a stale or damaged one)."""
    if cache_dir is None:
        return None
    path = _path(cache_dir, kind, key, threads, torch_device)
    if not path.exists():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(blob["state"])
        return dict(blob["meta"])
    except (
        RuntimeError,
        KeyError,
        EOFError,
        ValueError,
        pickle.UnpicklingError,
    ):  # stale or damaged: retrain and replace
        return None


def store_model(
    cache_dir: str | os.PathLike | None,
    kind: str,
    key: dict[str, Any],
    model: torch.nn.Module,
    meta: dict[str, Any],
    threads: int | None = None,
    torch_device: str | None = None,
) -> None:
    """Store `model`'s weights and `meta` under `key`. Written whole (temp + rename), so an
    interrupted run never leaves a half-written model for the next one; a write that fails is
    an `OutputError` naming the file (`experiments.common.files`)."""
    if cache_dir is None:
        return
    save_torch(
        {"state": cpu_state_dict(model), "meta": meta, "key": key}, _path(cache_dir, kind, key, threads, torch_device)
    )


def save_torch(obj: Any, path: str | os.PathLike) -> None:
    """`torch.save(obj)` to `path`, whole or not at all. Through a Python file: torch's own file
    writer (given a name) reports a full disk as a RuntimeError, a Python file as the OSError it is."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)


@dataclass
class Training:
    """One model to train: `train(model, *args, **kwargs)` trains `model` in place and returns
    its metadata (a dict, or None). `train` must be a module-level function and the arguments
    picklable: the training may run in another process. `seed`: the torch seed it runs under
    (the trainings here seed their batches explicitly as well)."""

    kind: str
    key: dict[str, Any]
    model: torch.nn.Module
    train: Callable[..., dict[str, Any] | None]
    args: tuple = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    seed: int = 0


def trained_state(
    train: Callable, model: torch.nn.Module, kwargs: dict[str, Any], torch_device: str, *args
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Train `model` with `train(model, *args, **kwargs)` on `torch_device` (the model and every
    tensor of the arguments moved there); its weights, on the CPU, and metadata (what a call of
    `executor.map` returns to the process that asked). The arguments stay top-level in the
    call, so that a back end can see which of them the calls share."""
    device = use_torch_device(torch_device)
    model.to(device)
    meta = train(model, *to_torch_device(args, device), **to_torch_device(kwargs, device))
    return cpu_state_dict(model), dict(meta or {})


def train_cached(
    executor, cache_dir: str | os.PathLike | None, trainings: list[Training]
) -> list[tuple[dict[str, Any], bool]]:
    """Every model of `trainings` with its trained weights: loaded from the cache, or trained
    (the misses together, in one `executor.map`) and stored; each model is then on the
    executor's `torch_device`. `executor`: anything with `map(fn, calls, seeds)` and
    `torch_threads` (`sim.backends`), and `torch_device` (without: the CPU). Returns, per training,
    (its metadata, whether it came from the cache). `cache_dir=None` trains every time."""
    threads = executor.torch_threads
    torch_device = getattr(executor, "torch_device", "cpu")
    found = [load_model(cache_dir, t.kind, t.key, t.model, threads, torch_device) for t in trainings]
    missing = [i for i, meta in enumerate(found) if meta is None]
    todo = [trainings[i] for i in missing]
    announce = getattr(executor, "announce", None)  # the job's progress lines, when it keeps them
    if announce is not None and trainings:
        kinds = ", ".join(dict.fromkeys(t.kind for t in todo))
        cached = f"{len(trainings) - len(todo)} from the cache"
        announce(
            f"training {len(todo)} model(s) ({kinds}); {cached}" if todo else f"{len(trainings)} model(s) {cached}"
        )
    t0 = time.perf_counter()
    calls = [(t.train, t.model, t.kwargs, torch_device, *t.args) for t in todo]
    outs = executor.map(trained_state, calls, [t.seed for t in todo])
    if announce is not None and todo:
        announce(f"trained {len(todo)} model(s) in {time.perf_counter() - t0:.0f} s (this machine's time)")
    for i, (state, meta) in zip(missing, outs):
        t = trainings[i]
        t.model.load_state_dict(state)
        store_model(cache_dir, t.kind, t.key, t.model, meta, threads, torch_device)
        found[i] = meta
    device = use_torch_device(torch_device)
    for t in trainings:  # the job computes with them where they trained
        t.model.to(device)
    missed = set(missing)
    return [(meta, i not in missed) for i, meta in enumerate(found)]

"""Trained models on disk, keyed by everything that decides their weights.

A sweep over link quality or fleet size reuses the same teacher (NoNN) or original model
(NAIR) instead of retraining it: `cached_model(cache_dir, "teacher", key, model, train)` loads
the weights when a file for `key` exists and otherwise trains `model` with `train(model)` and
stores it. The key is a JSON-able dict (settings, seed, data size, torch version); training is
deterministic, so a cache hit gives the weights a fresh run would have trained.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

__all__ = ["cache_key", "cached_model"]


def cache_key(parts: dict[str, Any]) -> str:
    """A short stable digest of `parts`, plus what else changes trained weights: the torch
    version and its intra-op thread count (the order of float summations)."""
    text = json.dumps({**parts, "torch": torch.__version__, "threads": torch.get_num_threads()}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def cached_model(cache_dir: str | os.PathLike | None, kind: str, key: dict[str, Any], model: torch.nn.Module,
                 train: Callable[[torch.nn.Module], dict[str, Any]]) -> tuple[dict[str, Any], bool]:
    """Load `model`'s weights from the cache, or train it and store them.

    Returns (the metadata `train` returned when the model was trained, whether it was a hit).
    `cache_dir=None` trains every time. Files are written whole (temp + rename), so an
    interrupted run never leaves a half-written model for the next one.
    """
    if cache_dir is None:
        return train(model), False
    path = Path(cache_dir) / f"{kind}-{cache_key(key)}.pt"
    if path.exists():
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(blob["state"])
            return dict(blob["meta"]), True
        except (RuntimeError, KeyError, EOFError, ValueError, pickle.UnpicklingError):  # stale or damaged: retrain and replace
            pass
    meta = train(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save({"state": model.state_dict(), "meta": meta, "key": key}, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return meta, False

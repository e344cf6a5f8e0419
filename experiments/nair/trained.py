"""Every model a NAIR job compares, trained (or loaded from the model cache).

The original model first: the others start from its weights, and NAIR's index vector I_k comes
from its unit importances. Then, independent of one another and so in one `executor.map` (in
parallel on Ray): NAIR's re-tuning in table III's three variants, CLIO single-tail and CLIO
multi-tail. `settings` is the job's `workload.*` settings (any object with those attributes).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from experiments.common.cache import Training, train_cached
from experiments.common.data import Dataset

from .model import BLOCKS, SplitNet, Tail, build_splitnet, narrow_tail
from .slicing import importance_order, unit_importance
from .training import SGDSettings, retune_nair, train_clio, train_original

__all__ = ["NAIR_VARIANTS", "Models", "build_models"]

# table III's rows: variant -> (importance weights, penalty); "nair" is the full method
NAIR_VARIANTS = {"nair_neither": (False, False), "nair_penalty": (False, True), "nair": (True, True)}


@dataclass
class Models:
    """NAIR's trained networks: the original, one per method, and CLIO's tails."""

    original: SplitNet
    nets: dict[str, SplitNet]  # method -> the network whose head runs on the device
    clio_tails: list[Tail]  # CLIO multi-tail: one tail per width (j units)
    order: np.ndarray  # the index vector I_k from the original model's importances
    meta: dict = field(default_factory=dict)  # per model: its training's metadata and whether the cache had it


def _train_settings(settings, seed: int, retune: bool) -> SGDSettings:
    """The original model's training, or (`retune`) the re-tuning and retraining from it."""
    s = settings
    if retune:
        return SGDSettings(s.retune_epochs, s.retune_lr, s.retune_batch_size, weight_decay=s.weight_decay, seed=seed)
    return SGDSettings(s.epochs, s.lr, s.batch_size, weight_decay=s.weight_decay, seed=seed)


def _train_clio_bundle(bundle: nn.ModuleDict, *args, **kwargs) -> dict:
    """CLIO multi-tail on a bundle of the network and its tails (one model for the cache)."""
    return train_clio(bundle["net"], *args, tails=list(bundle["tails"]), **kwargs)


def _nair_trainings(
    settings, original: SplitNet, order: np.ndarray, xy: tuple, retune_key: dict, seed: int
) -> dict[str, Training]:
    """NAIR's re-tuning (algorithm 2) of a copy of the original model, per table III variant."""
    s, k = settings, settings.split
    trainings = {}
    for name, (use_weight, use_penalty) in NAIR_VARIANTS.items():
        key = {
            **retune_key,
            "variant": name,
            "w_non": s.w_non if use_weight else None,
            "penalty_weight": s.penalty_weight if use_penalty else None,
        }
        train = _train_settings(s, seed, True)
        trainings[name] = Training(
            "nair-retuned",
            key,
            copy.deepcopy(original),
            retune_nair,
            (k, order, s.channels_per_unit, *xy, train),
            dict(
                w_non=s.w_non,
                penalty_weight=s.penalty_weight,
                use_weight=use_weight,
                use_penalty=use_penalty,
                fold_bn=s.fold_bn,
            ),
            seed=train.seed,
        )
    return trainings


def _clio_trainings(
    settings, original: SplitNet, xy: tuple, retune_key: dict, net_seed: int, train_seed: int
) -> dict[str, Training]:
    """CLIO single-tail (`clio_st`) and multi-tail (`clio_mt`, one re-initialised narrow tail
    per width, built under `net_seed + 1`) from copies of the original model."""
    s, k = settings, settings.split
    clio_key = {**retune_key, "clio_training": s.clio_training, "head_emphasis": s.clio_head_emphasis}
    clio = dict(head_emphasis=s.clio_head_emphasis, mode=s.clio_training)
    train = _train_settings(s, train_seed + 2, True)
    single = Training(
        "nair-clio-st",
        clio_key,
        copy.deepcopy(original),
        train_clio,
        (k, s.channels_per_unit, *xy, train),
        clio,
        seed=train.seed,
    )
    mt = copy.deepcopy(original)
    units = original.channels(k) // s.channels_per_unit
    with torch.random.fork_rng(devices=[]):  # the re-initialised first layers of the narrow tails
        torch.default_generator.manual_seed(net_seed + 1)
        tails = [narrow_tail(mt, k, (j + 1) * s.channels_per_unit) for j in range(units)]
    train = _train_settings(s, train_seed + 3, True)
    multi = Training(
        "nair-clio-mt",
        clio_key,
        nn.ModuleDict({"net": mt, "tails": nn.ModuleList(tails)}),
        _train_clio_bundle,
        (k, s.channels_per_unit, *xy, train),
        clio,
        seed=train.seed,
    )
    return {"clio_st": single, "clio_mt": multi}


def build_models(
    settings,
    data: Dataset,
    executor,
    cache_dir: str | None,
    *,
    seed: int,
    net_seed: int,
    train_seed: int,
    say: Callable[[str], None] = lambda text: None,
) -> Models:
    """Every model, trained on `executor` (anything with `map(fn, calls, seeds)` and
    `torch_threads`) or loaded from `cache_dir`. `seed` is the job's (part of the cache keys);
    `net_seed` initialises the networks, `train_seed` orders the minibatches."""
    s, k = settings, settings.split
    base_key = {
        "dataset": data.name,
        "n_train": len(data.y_train),
        "seed": seed,
        "input_size": s.input_size,
        "blocks": BLOCKS,
        "epochs": s.epochs,
        "lr": s.lr,
        "batch_size": s.batch_size,
        "wd": s.weight_decay,
    }
    original = build_splitnet(data.input_shape[0], data.num_classes, s.input_size, seed=net_seed)
    say("original model")
    xy = (data.x_train, data.y_train)
    [(meta, hit)] = train_cached(
        executor,
        cache_dir,
        [
            Training(
                "nair-original",
                base_key,
                original,
                train_original,
                (*xy, _train_settings(s, train_seed, False)),
                seed=train_seed,
            )
        ],
    )
    original.eval()
    conv, bn = original.split_layer(k)
    order = importance_order(unit_importance(conv, bn, s.channels_per_unit, s.fold_bn))
    retune_key = {
        **base_key,
        "split": k,
        "cpu": s.channels_per_unit,
        "fold_bn": s.fold_bn,
        "retune_epochs": s.retune_epochs,
        "retune_lr": s.retune_lr,
        "retune_batch_size": s.retune_batch_size,
    }
    trainings = {
        **_nair_trainings(s, original, order, xy, retune_key, train_seed + 1),
        **_clio_trainings(s, original, xy, retune_key, net_seed, train_seed),
    }
    say(f"re-tuning {', '.join(NAIR_VARIANTS)}; CLIO single and multi-tail ({len(trainings)} models)")
    done = train_cached(executor, cache_dir, list(trainings.values()))
    nets: dict[str, SplitNet] = {"original": original}
    info = {"original": {**meta, "cache_hit": hit}}
    for (name, t), (m, hit) in zip(trainings.items(), done):
        t.model.eval()
        nets[name], info[name] = (t.model["net"] if name == "clio_mt" else t.model), {**m, "cache_hit": hit}
    return Models(original, nets, list(trainings["clio_mt"].model["tails"]), order, info)

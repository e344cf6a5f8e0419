"""Strategies by name: every Message-API strategy of Flower, plus FedMAX."""

from __future__ import annotations

import inspect
from typing import Any

from flwr.serverapp import strategy as fs
from flwr.serverapp.strategy import Strategy

from strategies.fedmax import FedMAX

__all__ = ["STRATEGIES", "build_strategy"]

STRATEGIES: dict[str, type[Strategy]] = {
    "fedavg": fs.FedAvg,
    "fedprox": fs.FedProx,
    "fedavgm": fs.FedAvgM,
    "fedadam": fs.FedAdam,
    "fedyogi": fs.FedYogi,
    "fedadagrad": fs.FedAdagrad,
    "fedmedian": fs.FedMedian,
    "fedtrimmedavg": fs.FedTrimmedAvg,
    "krum": fs.Krum,
    "multikrum": fs.MultiKrum,
    "bulyan": fs.Bulyan,
    "qfedavg": fs.QFedAvg,
    "fedmax": FedMAX,
}


def build_strategy(name: str, params: dict[str, Any] | None = None, **common: Any) -> Strategy:
    """Instantiate strategy `name` with `params` (strategy-specific) and the `common`
    settings it accepts (fraction_train, min_train_nodes, ...)."""
    cls = STRATEGIES.get(name)
    if cls is None:
        raise ValueError(f"strategy.name={name!r}: unknown strategy; allowed: {', '.join(sorted(STRATEGIES))}")
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "args", "kwargs"}
    if cls is FedMAX:
        accepted |= set(inspect.signature(fs.FedAvg.__init__).parameters) - {"self"}
    params = dict(params or {})
    for key in params:
        if key not in accepted:
            raise ValueError(
                f"strategy.params.{key}: not a parameter of {cls.__name__}; allowed: {', '.join(sorted(accepted))}"
            )
    kwargs = {k: v for k, v in common.items() if k in accepted}
    return cls(**kwargs, **params)

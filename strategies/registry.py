"""Strategies by name: every Message-API strategy of Flower, plus FedMAX."""

from __future__ import annotations

import inspect
from typing import Any

from flwr.serverapp import strategy as fs
from flwr.serverapp.strategy import Strategy

from strategies.asynchronous import FedAsync, FedBuff
from strategies.fedmax import FedMAX

__all__ = ["STRATEGIES", "build_strategy"]

STRATEGIES: dict[str, type] = {  # Flower Strategy classes, and the asynchronous ones (same `start`)
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
    "fedasync": FedAsync,
    "fedbuff": FedBuff,
}


def build_strategy(name: str, params: dict[str, Any] | None = None, **common: Any) -> Strategy:
    """Instantiate strategy `name` with `params` (strategy-specific) and the `common`
    settings it accepts (fraction_train, min_train_nodes, ...)."""
    cls = STRATEGIES.get(name)
    if cls is None:
        raise ValueError(f"strategy.name={name!r}: unknown strategy; allowed: {', '.join(sorted(STRATEGIES))}")
    accepted: set[str] = set()
    for base in cls.__mro__:  # a class whose __init__ takes **kwargs passes them on to its base's
        if "__init__" not in vars(base):
            continue
        signature = inspect.signature(base.__init__).parameters
        accepted |= set(signature) - {"self", "args", "kwargs"}
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.values()):
            break
    params = dict(params or {})
    for key in params:
        if key not in accepted:
            raise ValueError(
                f"strategy.params.{key}: not a parameter of {cls.__name__}; allowed: {', '.join(sorted(accepted))}"
            )
    kwargs = {k: v for k, v in common.items() if k in accepted}
    return cls(**kwargs, **params)

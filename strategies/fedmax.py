"""FedMAX (Chen, Bhardwaj, Marculescu 2020): FedAvg aggregation, and clients that add a
maximum-entropy prior on their last hidden activation to the loss."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from strategies.objectives import FEDMAX_BETA_KEY

__all__ = ["FedMAX", "activation_divergence"]


class FedMAX(FedAvg):
    """FedAvg whose train config asks clients for `CE + beta * KL(U || softmax(a))`.

    The client side of the contract is `strategies.objectives.ClientObjective`.
    """

    def __init__(self, *, beta: float = 1000.0, **kwargs) -> None:
        super().__init__(**kwargs)
        if beta < 0:
            raise ValueError(f"strategy.params.beta={beta}: must be >= 0")
        self.beta = float(beta)

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        config[FEDMAX_BETA_KEY] = self.beta
        return super().configure_train(server_round, arrays, config, grid)


def _log_softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def activation_divergence(mean_activations: np.ndarray) -> float:
    """Mean over clients of KL(softmax(a_i) || softmax(a_bar)), a_bar the clients' mean.

    `mean_activations` is (clients, D): each client's mean last-hidden activation over its
    local data. Zero when every client's activation is the same.
    """
    a = np.asarray(mean_activations, dtype=np.float64)
    if a.ndim != 2 or len(a) == 0:
        return float("nan")
    log_p = _log_softmax(a)
    log_q = _log_softmax(a.mean(axis=0, keepdims=True))
    return float((np.exp(log_p) * (log_p - log_q)).sum(axis=1).mean())

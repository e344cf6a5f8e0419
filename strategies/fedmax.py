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


def activation_divergence(activations: np.ndarray) -> float:
    """How far the clients' last hidden activations for the same inputs lie apart.

    `activations` is (clients, images, D): each client's post-ReLU last hidden activation
    vector for each image of one probe set (the same images for every client), taken in eval
    mode from its weights after local training. Each vector, being non-negative, is normalised
    to sum 1 (an all-zero vector: uniform); per image, q_bar is the clients' mean of those
    distributions. The divergence is the mean over clients and images of KL(q_i || q_bar)
    (a generalised Jensen-Shannon divergence: 0 when every client maps each image to the same
    direction, at most log(clients)). NaN without clients, or with a non-finite value."""
    a = np.asarray(activations, dtype=np.float64)
    if a.ndim != 3 or len(a) == 0 or not np.isfinite(a).all():
        return float("nan")
    if (a < 0).any():
        raise ValueError("activation_divergence: activations must be non-negative (post-ReLU)")
    total = a.sum(axis=-1, keepdims=True)
    q = np.where(total > 0, a / np.where(total > 0, total, 1.0), 1.0 / a.shape[-1])
    q_bar = q.mean(axis=0, keepdims=True)  # > 0 wherever some q_i > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(q > 0, q * (np.log(q) - np.log(q_bar)), 0.0)
    return float(terms.sum(axis=-1).mean())

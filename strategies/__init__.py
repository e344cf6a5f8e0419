"""Federated strategies: Flower's own, looked up by name, and FedMAX beside them."""

from strategies.fedmax import FedMAX, activation_divergence
from strategies.objectives import (
    FEDMAX_BETA_KEY,
    PROXIMAL_MU_KEY,
    ClientObjective,
    max_entropy_term,
)
from strategies.registry import STRATEGIES, build_strategy

__all__ = [
    "FEDMAX_BETA_KEY",
    "PROXIMAL_MU_KEY",
    "STRATEGIES",
    "ClientObjective",
    "FedMAX",
    "activation_divergence",
    "build_strategy",
    "max_entropy_term",
]

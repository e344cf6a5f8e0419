"""Client-side objectives that strategies ask for through their train config.

A strategy that changes the clients' loss (FedMAX's entropy term, FedProx's proximal term)
puts its coefficient in the train `ConfigRecord` under the key below; `ClientObjective`
reads the record and computes the loss. The keys live here, once, so the strategy and the
client cannot disagree.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

FEDMAX_BETA_KEY = "fedmax-beta"
PROXIMAL_MU_KEY = "proximal-mu"  # the key Flower's FedProx sends

__all__ = ["ClientObjective", "FEDMAX_BETA_KEY", "PROXIMAL_MU_KEY", "max_entropy_term"]


def max_entropy_term(features: torch.Tensor) -> torch.Tensor:
    """KL(U || softmax(a)) averaged over all B*D elements, as the FedMAX authors' code does
    (`KLDivLoss(reduction='mean')`), so beta is in effect divided by D."""
    d = features.shape[1]
    # elementwise U * (log U - log p), averaged over B*D: F.kl_div(..., reduction="mean")
    return (math.log(1.0 / d) - F.log_softmax(features, dim=1)).mean() / d


@dataclass(frozen=True)
class ClientObjective:
    """CE(logits, y) + beta * KL(U || softmax(a)) + mu/2 * ||w - w_global||^2."""

    beta: float = 0.0
    mu: float = 0.0

    @classmethod
    def from_config(cls, config: Mapping) -> ClientObjective:
        return cls(beta=float(config.get(FEDMAX_BETA_KEY, 0.0)), mu=float(config.get(PROXIMAL_MU_KEY, 0.0)))

    @property
    def needs_features(self) -> bool:
        return self.beta > 0.0

    def loss(
        self,
        logits: torch.Tensor,
        y: torch.Tensor,
        features: torch.Tensor | None = None,
        params: Sequence[torch.Tensor] = (),
        global_params: Sequence[torch.Tensor] = (),
    ) -> torch.Tensor:
        loss = F.cross_entropy(logits, y)
        if self.beta > 0.0:
            if features is None:
                raise ValueError("FedMAX's objective needs the last hidden activation")
            loss = loss + self.beta * max_entropy_term(features)
        if self.mu > 0.0:
            prox = sum((p - g).pow(2).sum() for p, g in zip(params, global_params))
            loss = loss + 0.5 * self.mu * prox
        return loss

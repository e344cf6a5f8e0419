"""What a worker holds in memory: the peaks of a run, measured on the real tensors, and the
bound theorem 1 gives for them: as the paper states it (an equal split of the model into square
matrices, `theorem1`) and as its proof gives it for one stage's own layers (`theorem1_stage`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["F32_BYTES", "KINDS", "Memory", "theorem1", "theorem1_stage"]

F32_BYTES = 4  # bytes per float32 element (theorem 1 counts elements)
KINDS = ("weights", "working", "vectors", "optimizer", "activations", "state", "total")


@dataclass
class Memory:
    """Peak bytes a worker holds, per kind and in total, and the most weight versions at once.

    weights: stored weight versions; working: a rebuilt version while a pass uses it; vectors:
    mcPipe's stored (activation, error) pairs; optimizer: momentum buffers; activations: what
    microbatches in flight keep and what waits in the mailbox; state: weights + vectors +
    optimizer (what theorem 1 counts); total: all of them."""

    peak: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    max_versions: int = 0

    def observe(
        self, *, weights: int, vectors: int, optimizer: int, activations: int, working: int = 0, versions: int = 1
    ) -> None:
        """Take what the worker holds now into the peaks."""
        now = {
            "weights": weights,
            "working": working,
            "vectors": vectors,
            "optimizer": optimizer,
            "activations": activations,
            "state": weights + vectors + optimizer,
            "total": weights + working + vectors + optimizer + activations,
        }
        for k, v in now.items():
            self.peak[k] = max(self.peak[k], int(v))
        self.max_versions = max(self.max_versions, versions)


def theorem1(total_param_bytes: int, n: int, m: int, b: int) -> tuple[float, float]:
    """Theorem 1's per-worker memory: (model-distributed pipelining m*Omega/N, mcPipe's bound
    Omega/N + 2(m-1)*sqrt(Omega/N)), in bytes, with Omega counted in float32 elements and each
    stored vector holding the b samples of a microbatch (b = 1 is the paper's statement)."""
    per = total_param_bytes / F32_BYTES / n
    return m * per * F32_BYTES, (per + 2 * (m - 1) * b * math.sqrt(per)) * F32_BYTES


def theorem1_stage(
    schedule: str, weight_bytes: Sequence[int], extra_bytes: Sequence[int], m: int, *, momentum: bool = False
) -> float:
    """Theorem 1's proof applied to one stage's own layers, in bytes: the worst case of m weight
    versions (PipeDream), or one version plus m - 1 stored items per layer (mcPipe), where a
    layer's item is what its store keeps per later update (`extra_bytes`: one microbatch's
    (activation, error) pair, or a weight version where the layer stashes weights); with
    momentum, one optimiser buffer of the stage's size besides. NaN for other schedules.

    The paper's statement follows from this one when the stage is one K x K matrix without bias
    holding exactly Omega/N elements and b = 1: a pair is 2K = 2 sqrt(Omega/N) elements."""
    params = sum(weight_bytes)
    optimizer = params if momentum else 0
    if schedule == "pipedream":
        return float(m * params + optimizer)
    if schedule == "mcpipe":
        return float(params + (m - 1) * sum(extra_bytes) + optimizer)
    return math.nan

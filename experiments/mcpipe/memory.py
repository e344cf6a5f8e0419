"""What a worker holds in memory: the peaks of a run, measured on the real tensors, and the
bound theorem 1 gives for them."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["F32_BYTES", "KINDS", "Memory", "theorem1"]

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

"""Run a pipeline's operations in a given order without a clock.

`replay(stages, ops, batch)` executes (worker, 'F' | 'B', microbatch) operations exactly as
the simulated workers do, handing activations and errors straight to the next stage. Given the
event order of a simulated run it reproduces that run's weight updates, so two version
policies can be compared update by update on the same schedule (the equivalence of mcPipe and
PipeDream under plain SGD).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch

from .stage import Stage

__all__ = ["replay"]


def replay(
    stages: Sequence[Stage],
    ops: Iterable[tuple[int, str, int]],
    batch: Callable[[int], tuple[torch.Tensor, torch.Tensor]],
) -> list[tuple[int, int, list]]:
    """Execute `ops` in order; after every backward, (worker, microbatch, that stage's latest
    weights). A forward at the last stage also computes the loss's error, as a worker does."""
    inputs: dict[tuple[int, int], torch.Tensor] = {}
    errors: dict[tuple[int, int], torch.Tensor] = {}
    inflight: list[dict] = [{} for _ in stages]
    snapshots = []
    for s, op, k in ops:
        st = stages[s]
        if op == "F":
            x = batch(k)[0] if s == 0 else inputs.pop((s, k))
            out, rec, _ = st.forward(x)
            inflight[s][k] = rec
            if st.last:
                errors[(s, k)] = st.loss_error(out, batch(k)[1])[1]
            else:
                inputs[(s + 1, k)] = out
        elif op == "B":
            rec = inflight[s].pop(k)
            d_in, pairs, _ = st.backward(rec, errors.pop((s, k)))
            st.update(pairs, min((r.version for r in inflight[s].values()), default=None))
            if s > 0:
                errors[(s - 1, k)] = d_in
            snapshots.append((s, k, [tuple(t.clone() for t in p) for p in st.latest_params()]))
        else:
            raise ValueError(f"op {op!r}: allowed: F, B")
    return snapshots

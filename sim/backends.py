"""Execution back ends: where the real ClientApp computations of a round run.

The grid hands a back end the messages that reached their devices; the back end returns,
for each, the reply and the work the computation performed (FLOPs, peak memory). The
simulated outcome depends only on those, never on which back end ran them or in what order.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from flwr.app import Context, Message

from sim.meter import WorkMeter

__all__ = ["Execution", "LocalBackend"]


@dataclass
class Execution:
    """The outcome of running a ClientApp on one message for real."""

    reply: Message | None
    flops: int
    peak_bytes: int
    error: str = ""


class LocalBackend:
    """Runs ClientApps one after another in this process; FLOP figures cached per shape."""

    def __init__(self, optimizer_copies: int = 1):
        self.optimizer_copies = optimizer_copies
        self._cost_cache: dict = {}

    def execute(self, app, jobs: list[tuple[Message, Context, int]]) -> list[Execution]:
        return [self._one(app, *job) for job in jobs]

    def _one(self, app, message: Message, context: Context, torch_seed: int) -> Execution:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(torch_seed)
            meter = WorkMeter(self._cost_cache, self.optimizer_copies)
            try:
                with meter:
                    reply = app(message, context)
            except Exception as exc:  # a failing ClientApp is an error reply, as in Flower
                return Execution(None, meter.flops, meter.peak_bytes, f"{type(exc).__name__}: {exc}")
        return Execution(reply, meter.flops, meter.peak_bytes)

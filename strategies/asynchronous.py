"""Asynchronous federated learning, written as a Flower ServerApp's logic against the `Grid`'s
non-blocking `push_messages` / `pull_messages`, and nothing else of the simulator: the same
code runs on a real SuperLink.

The server keeps up to `concurrency` nodes training at once. Each time it pulls, it takes in the
replies that have arrived and sends work to as many idle nodes as slots freed. An update's
staleness tau is the number of server versions between the model it was computed from and the
one the server holds when it takes the update in.

- `FedAsync` (Xie, Koyejo and Gupta, 2019): each update is mixed in at once, as its own
  version: x <- (1 - a_t) x + a_t x_k, with a_t = mixing * s(tau).
- `FedBuff` (Nguyen et al., 2022): updates (deltas x_k - x_from, where x_from is the model the
  node was sent) are buffered; once `buffer_size` (K) are in, the server applies their mean:
  x <- x + server_lr * sum_k n_k s(tau_k) delta_k / sum_k n_k (n_k: the node's examples, as
  FedAvg weighs them; a stale update moves the model less, it does not reweigh the others).
  Replies that arrive at the same simulated moment are taken in together, so a buffer may hold
  more than K when it is applied.

The staleness function s: `constant` (1), `polynomial` ((1 + tau) ** -a), `hinge` (1 while
tau <= b, then 1 / (a (tau - b) + 1)), as in FedAsync's paper.

With K = concurrency = the nodes of a round, equal data sizes, s = 1 and server_lr = 1, FedBuff's
versions are FedAvg's rounds (tests/unit/test_async.py checks it).
"""

from __future__ import annotations

import random
from collections.abc import Callable

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Result

__all__ = ["STALENESS", "AsyncStrategy", "FedAsync", "FedBuff", "staleness_weight"]

STALENESS = ("constant", "polynomial", "hinge")


def staleness_weight(kind: str, tau: float, a: float = 0.5, b: float = 4.0) -> float:
    """s(tau): how much an update `tau` versions stale counts."""
    if kind == "constant":
        return 1.0
    if kind == "polynomial":
        return float((1.0 + tau) ** -a)
    if kind == "hinge":
        return 1.0 if tau <= b else 1.0 / (a * (tau - b) + 1.0)
    raise ValueError(f"strategy.params.staleness={kind!r}: unknown; allowed: {', '.join(STALENESS)}")


def _numpy(record: ArrayRecord) -> dict[str, np.ndarray]:
    return {name: arr.numpy() for name, arr in record.items()}


def _record(model: dict[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord({name: Array(np.ascontiguousarray(v)) for name, v in model.items()})


def _check(ok: bool, name: str, value, allowed: str) -> None:
    if not ok:
        raise ValueError(f"strategy.params.{name}={value!r}: {allowed}")


class AsyncStrategy:
    """The push/pull loop FedAsync and FedBuff share; `_take` is what each does with replies."""

    def __init__(
        self,
        *,
        concurrency: int | None = None,
        staleness: str = "constant",
        staleness_a: float = 0.5,
        staleness_b: float = 4.0,
        fraction_train: float = 0.3,
        fraction_evaluate: float = 0.0,
        min_train_nodes: int = 2,
        arrayrecord_key: str = "arrays",
        configrecord_key: str = "config",
        weighted_by_key: str = "num-examples",
    ):
        _check(
            concurrency is None or (isinstance(concurrency, int) and concurrency >= 1),
            "concurrency",
            concurrency,
            "an integer >= 1 (nodes training at once), or null: fraction_train of the nodes",
        )
        if fraction_evaluate:
            raise ValueError(
                f"strategy.fraction_evaluate={fraction_evaluate!r}: {type(self).__name__} evaluates the model on "
                "the server only; allowed: 0"
            )
        _check(staleness in STALENESS, "staleness", staleness, f"allowed: {', '.join(STALENESS)}")
        _check(isinstance(staleness_a, (int, float)) and staleness_a >= 0, "staleness_a", staleness_a, "must be >= 0")
        _check(isinstance(staleness_b, (int, float)) and staleness_b >= 0, "staleness_b", staleness_b, "must be >= 0")
        self.concurrency = concurrency
        self.staleness, self.staleness_a, self.staleness_b = staleness, float(staleness_a), float(staleness_b)
        self.fraction_train, self.min_train_nodes = fraction_train, min_train_nodes
        self.arrayrecord_key, self.configrecord_key, self.weighted_by_key = (
            arrayrecord_key,
            configrecord_key,
            weighted_by_key,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(concurrency={self.concurrency}, staleness={self.staleness!r})"

    def weight(self, tau: float) -> float:
        return staleness_weight(self.staleness, tau, self.staleness_a, self.staleness_b)

    def start(
        self,
        grid: Grid,
        initial_arrays: ArrayRecord,
        num_rounds: int = 3,
        timeout: float | None = None,
        train_config: ConfigRecord | None = None,
        evaluate_config: ConfigRecord | None = None,  # noqa: ARG002 (no federated evaluation)
        evaluate_fn: Callable[[int, ArrayRecord], MetricRecord | None] | None = None,
    ) -> Result:
        """Run until the server holds version `num_rounds`; `timeout` is each message's
        time-to-live (its slot is freed when no reply came by then)."""
        result = Result()
        self.model, self.version = _numpy(initial_arrays), 0
        self.sent_models = {0: self.model}  # the models messages still out were sent
        self.evaluate_fn, self.result, self.num_rounds = evaluate_fn, result, num_rounds
        self._evaluate(initial_arrays)
        out: dict[str, tuple[int, int]] = {}  # message id -> (node, version it was sent)
        self.slots = slots = self.concurrency
        train_config = ConfigRecord() if train_config is None else train_config
        while self.version < num_rounds:
            nodes = list(grid.get_node_ids())  # waits (on the simulated clock) only while nothing is out
            if slots is None:
                self.slots = slots = max(self.min_train_nodes, int(len(nodes) * self.fraction_train))
            busy = {node for node, _ in out.values()}
            idle = sorted(n for n in nodes if n not in busy)
            chosen = random.sample(idle, min(slots - len(out), len(idle))) if len(out) < slots else []
            if chosen:
                content = {
                    self.arrayrecord_key: _record(self.model),
                    self.configrecord_key: ConfigRecord({**train_config, "server-round": self.version + 1}),
                }
                group = str(self.version + 1)
                messages = [
                    grid.create_message(RecordDict(content), MessageType.TRAIN, node, group, ttl=timeout)
                    for node in chosen
                ]
                for node, mid in zip(chosen, grid.push_messages(messages)):
                    out[mid] = (node, self.version)
            if not out:
                raise RuntimeError("no node to send work to")
            replies = list(grid.pull_messages(list(out)))
            taken = []
            at = self.version  # staleness is counted against the version held when the replies came
            for reply in replies:
                _, sent_at = out.pop(reply.metadata.reply_to_message_id)
                if not reply.has_error() and self.arrayrecord_key in reply.content:
                    taken.append((reply, sent_at, at - sent_at))
            self._take(taken)
            keep = {v for _, v in out.values()} | {self.version}
            self.sent_models = {v: m for v, m in self.sent_models.items() if v in keep}
            self.sent_models[self.version] = self.model
        result.arrays = _record(self.model)
        return result

    # --- what FedAsync and FedBuff do differently -----------------------------------
    def _take(self, replies: list[tuple[Message, int, int]]) -> None:
        raise NotImplementedError

    def _examples(self, reply: Message) -> float:
        metrics = [v for v in reply.content.values() if isinstance(v, MetricRecord)]
        return float(metrics[0].get(self.weighted_by_key, 1.0)) if metrics else 1.0

    def _new_version(self, model: dict[str, np.ndarray]) -> None:
        self.model = {k: v.astype(self.model[k].dtype, copy=False) for k, v in model.items()}
        self.version += 1
        self._evaluate(_record(self.model))

    def _evaluate(self, arrays: ArrayRecord) -> None:
        if self.evaluate_fn is not None:
            metrics = self.evaluate_fn(self.version, arrays)
            if metrics is not None:
                self.result.evaluate_metrics_serverapp[self.version] = metrics


class FedAsync(AsyncStrategy):
    """Each update mixed in on arrival: x <- (1 - mixing * s(tau)) x + mixing * s(tau) x_k."""

    def __init__(self, *, mixing: float = 0.6, **kwargs):
        _check(isinstance(mixing, (int, float)) and 0 < mixing <= 1, "mixing", mixing, "allowed range is (0, 1]")
        super().__init__(**kwargs)
        self.mixing = float(mixing)

    def _take(self, replies: list[tuple[Message, int, int]]) -> None:
        for reply, _, tau in replies[: self.num_rounds - self.version]:  # replies that came together: in turn
            a = self.mixing * self.weight(tau)
            update = _numpy(reply.content[self.arrayrecord_key])
            self._new_version({k: (1.0 - a) * v + a * update[k] for k, v in self.model.items()})


class FedBuff(AsyncStrategy):
    """Buffered asynchronous aggregation: once `buffer_size` updates are in, x <- x + server_lr * their mean."""

    def __init__(self, *, buffer_size: int | None = None, server_lr: float = 1.0, **kwargs):
        _check(
            buffer_size is None or (isinstance(buffer_size, int) and buffer_size >= 1),
            "buffer_size",
            buffer_size,
            "an integer >= 1 (updates per server version), or null: half the concurrency",
        )
        _check(isinstance(server_lr, (int, float)) and server_lr > 0, "server_lr", server_lr, "must be > 0")
        super().__init__(**kwargs)
        if buffer_size is not None and self.concurrency is not None:
            _check(
                buffer_size <= self.concurrency,
                "buffer_size",
                buffer_size,
                f"must be <= concurrency ({self.concurrency}): updates would wait for others sent after them",
            )
        self.buffer_size, self.server_lr = buffer_size, float(server_lr)
        self.buffer: list[tuple[dict[str, np.ndarray], float, float]] = []

    def start(self, grid: Grid, initial_arrays: ArrayRecord, num_rounds: int = 3, **kwargs) -> Result:
        self.buffer = []
        return super().start(grid, initial_arrays, num_rounds, **kwargs)

    def _take(self, replies: list[tuple[Message, int, int]]) -> None:
        for reply, sent_at, tau in replies:
            update, base = _numpy(reply.content[self.arrayrecord_key]), self.sent_models[sent_at]
            delta = {k: update[k].astype(np.float64) - base[k] for k in base}
            self.buffer.append((delta, self._examples(reply), self.weight(tau)))
        k = self.buffer_size or max(1, self.slots // 2)
        if len(self.buffer) < k:
            return
        total = sum(n for _, n, _ in self.buffer)
        step = {name: sum(d[name] * (n * s) for d, n, s in self.buffer) / total for name in self.model}
        self.buffer = []
        self._new_version({name: v + self.server_lr * step[name] for name, v in self.model.items()})

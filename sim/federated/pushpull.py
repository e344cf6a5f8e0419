"""The asynchronous half of the simulated grid: Flower's non-blocking `push_messages` and
`pull_messages` on the SimPy clock (see `sim.federated.grid` for the whole). A push sends now
and returns; a pull returns the outcomes known, first running the clock to the next arrival or
time-to-live when none is."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from flwr.app import Error, Message, MetricRecord
from flwr.common.constant import ErrorCode

from sim.federated.payload import Arrival, phase_of
from sim.federated.rows import ClientRow
from sim.federated.timeline import Round

__all__ = ["AGGREGATION_FLOPS_PER_VALUE", "Flight", "PushPull"]

# a weighted mean of the replies: a multiply and an add per value of each (numpy, which no
# FLOP counter sees: counted from the sizes; robust aggregators cost more, so a lower bound)
AGGREGATION_FLOPS_PER_VALUE = 2


@dataclass
class Flight:
    """A pushed message, until the server pulls its outcome."""

    message: Message
    version: int  # of the model it carries (its server-round - 1)
    row: ClientRow
    clock: Round
    index: int  # in its clock's rows
    reply: Arrival | None  # what the device sends back, with the weights to probe
    expires_s: float  # dispatch + time-to-live

    def replied(self) -> bool:
        """A reply (or the device's error) reached the server within the time-to-live."""
        return self.clock.arrivals[self.index].triggered and self.row.status != "straggler"

    def outcome_known(self, now: float) -> bool:
        return now >= self.expires_s or self.replied()


class PushPull:
    """`SimGrid`'s push/pull methods (a mixin: they use its clock, book, launch and budget)."""

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        """Send `messages` now; returns their ids at once (the devices work on the clock)."""
        messages = sorted(messages, key=lambda m: m.metadata.dst_node_id)
        if not messages:
            return []
        self.settle()
        self._check_budget()
        self.book.active = True
        ids = []
        for ttl in sorted({m.metadata.ttl for m in messages}):  # one clock per time-to-live
            batch = [m for m in messages if m.metadata.ttl == ttl]
            phase = phase_of(batch[0])
            rnd = self._round_of(batch[0], phase)
            for msg in batch:
                self._identify(msg, rnd, phase)
            stats, plans, replies, clock = self._launch(batch, ttl, rnd, phase)
            for msg in batch:
                key = (rnd, int(msg.metadata.dst_node_id), phase)
                self._sent[key] = self._sent.get(key, 0) + 1
            self.phases.append(stats)
            if phase == "train":
                self.book.mark(rnd - 1, told=False)  # the model it carries exists
                self.book.close(self.now_s)
            building = self.book.building()
            for i, (msg, plan, row) in enumerate(zip(batch, plans, stats.clients)):
                mid = msg.metadata.message_id
                expires = self.now_s + ttl
                self._flights[mid] = Flight(msg, rnd - 1, row, clock, i, replies.get(plan.node_id), expires)
                building.sent.append(row)
                ids.append(mid)
        env = self.net.env
        while env.peek() == env.now:  # the devices take the messages (they are busy from now)
            env.step()
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        """The replies (or error replies) of `message_ids` whose outcome is known; when none's
        is, the clock runs first to the next arrival or time-to-live among them."""
        self.settle()
        flights = [self._flights[m] for m in message_ids if m in self._flights]
        if not flights:
            return []
        env = self.net.env
        if not any(f.outcome_known(env.now) for f in flights):
            expiry = env.timeout(min(f.expires_s for f in flights) - env.now)
            env.run(until=env.any_of([expiry] + [f.clock.arrivals[f.index] for f in flights]))
            while env.peek() == env.now:  # everything else of this moment
                env.step()
        return [self._pulled(f) for f in flights if f.outcome_known(env.now)]

    def _unpulled(self) -> list[ClientRow]:
        rows = [f.row for f in self._flights.values()]
        self._flights.clear()
        return rows

    def _pulled(self, f: Flight) -> Message:
        """The server learns `f`'s outcome: its reply, the device's error, or Flower's error
        reply for a message unanswered within its time-to-live."""
        del self._flights[f.message.metadata.message_id]
        row, building = f.row, self.book.building()
        building.returned.append(row)
        if not f.replied():  # pulled because its time-to-live is over
            reason = f"no reply within the message's ttl of {f.message.metadata.ttl:g} simulated seconds"
            return Message(Error(code=ErrorCode.REPLY_MESSAGE_UNAVAILABLE, reason=reason), reply_to=f.message)
        row.age_s = row.arrival_s - row.dispatch_s
        if row.status == "out_of_memory":
            reason = f"the work needs {row.peak_memory_bytes} bytes, the device has {row.device_memory_bytes}"
            return Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=reason), reply_to=f.message)
        got = f.reply
        reply = got.reply if got is not None else None
        if row.status == "error" or reply is None:
            if reply is not None and reply.has_error():
                return reply
            return Message(
                Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason="the ClientApp failed"), reply_to=f.message
            )
        if self.rejects(got, row):
            reason = "the reply's arrays hold NaN or inf (kept from the server: workload.accept_non_finite)"
            return Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=reason), reply_to=f.message)
        self.server_flops += AGGREGATION_FLOPS_PER_VALUE * got.values
        metrics = [v for v in reply.content.values() if isinstance(v, MetricRecord)]
        if row.phase == "evaluate":
            if metrics:
                building.eval_metrics.append((row.node_id, dict(metrics[0])))
        else:
            row.staleness = float(self.book.version - f.version)
            building.applied.append(row)
            building.activations.append(self.probe(got.sent) if got.sent is not None else None)
        return reply

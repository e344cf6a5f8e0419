"""The Flower bridge: a `flwr.serverapp.grid.Grid` whose messages travel over simulated links
to simulated devices.

A strategy (or a user's unmodified ServerApp) calls `send_and_receive`, or `push_messages` and
`pull_messages`; for each message the grid decides whether the device takes part, how the
download fares on its link (time, retransmissions, or flipped bits in the real arrays), runs the
real `ClientApp` under a `WorkMeter` (the messages of one push or one `send_and_receive`, sent at
the same simulated moment, go to the back end together), checks the device's memory against the
measured footprint, sends the reply up the link the same way, and plays each device's part as a
process on the SimPy clock.

- `send_and_receive` (synchronous rounds) runs the clock until every reply is in or the
  strategy's `timeout` (simulated seconds) has passed. Late replies are stragglers, withheld.
- `push_messages` starts the devices' processes and returns at once; `pull_messages` returns the
  replies that have arrived, and when none of those asked for has, first runs the clock to the
  next arrival, or to the earliest time-to-live (`Message.metadata.ttl`, simulated seconds) of
  those asked for: a message without a reply by then gets Flower's error reply
  (REPLY_MESSAGE_UNAVAILABLE), as from a real SuperLink. No `time.sleep` is needed between pulls.

Server versions and staleness: version v is the model the server holds after its v-th
aggregation. The grid learns of a version when the server evaluates it (the built-in
strategies' `evaluate_fn`, through `mark_version`) or pushes a message whose config carries
`server-round` v + 1 (as Flower's own strategies tag their messages: the round a reply is for).
A reply's staleness is the number of versions between the one it was computed from and the one
the server holds when it pulls the reply; the replies pulled between two versions are the
updates applied to the later one (`VersionStats`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Error, Message, MetricRecord, RecordDict
from flwr.common.constant import ErrorCode
from flwr.serverapp import Grid
from flwr.supercore.run import Run

from channels import TransferOutcome, corrupt_arrays, transfer
from devices import Fleet
from experiments.federated.internals import set_message_id
from experiments.federated.records import array_view
from sim.backends.base import Backend, Execution
from sim.backends.local import LocalBackend
from sim.federated.timeline import ClientPlan, Round, client
from sim.net import EnergyLedger, Network, Server
from sim.seeding import stream
from strategies.objectives import ACTIVATION_PROBE_KEY as PROBE_KEY

__all__ = [
    "ClientRow",
    "FleetExhausted",
    "PhaseStats",
    "SimGrid",
    "TimeBudgetReached",
    "VersionStats",
    "message_bytes",
]

RUN_ID = 1
SERVER_NODE_ID = 0
# a weighted mean of the replies: a multiply and an add per value of each (numpy, which no
# FLOP counter sees: counted from the sizes; robust aggregators cost more, so a lower bound)
AGGREGATION_FLOPS_PER_VALUE = 2
WAIT_LIMIT_S = 30 * 86400.0  # how long a server waits for enough devices before the run stops


class FleetExhausted(RuntimeError):
    """Too few devices online, charged and idle for the strategy to sample, for too long."""


class TimeBudgetReached(RuntimeError):
    """The run's simulated time budget (`workload.time_budget_s`) is spent: no new work starts."""


@dataclass
class ClientRow:
    """One sampled client in one round and phase: the row of clients.csv."""

    round: int
    phase: str
    node_id: int
    device: str
    status: str
    download_s: float
    compute_s: float
    upload_s: float
    energy_j: float
    compute_flops: int
    peak_memory_bytes: int
    device_memory_bytes: int
    bytes_down: int
    bytes_up: int
    attempts_down: int
    attempts_up: int
    retransmissions: int
    bits_flipped: int
    dispatch_s: float  # when the server sent the message
    arrival_s: float  # when the reply reached the server (NaN: none did)
    age_s: float  # arrival - dispatch (NaN: no reply)
    staleness: float  # server versions between the model it was sent and the one that took in the reply


@dataclass
class PhaseStats:
    """What one `send_and_receive` did: one train (or evaluate) phase of a round."""

    round: int
    phase: str
    start_s: float
    end_s: float
    clients: list[ClientRow] = field(default_factory=list)
    mean_activations: list[np.ndarray] = field(default_factory=list)  # of the received replies
    eval_metrics: list[tuple[int, dict]] = field(default_factory=list)  # of the received replies


@dataclass
class VersionStats:
    """One server version of an asynchronous run (a row of its rounds.csv): when it came to be,
    the updates applied to it, and every message whose outcome the server learnt since the last."""

    version: int
    time_s: float = math.nan
    applied: list[ClientRow] = field(default_factory=list)  # replies taken in
    returned: list[ClientRow] = field(default_factory=list)  # every outcome pulled (applied among them)
    sent: list[ClientRow] = field(default_factory=list)  # messages pushed
    activations: list[np.ndarray | None] = field(default_factory=list)  # each applied reply's mean activation
    eval_metrics: list[tuple[int, dict]] = field(default_factory=list)  # of evaluate replies pulled


@dataclass
class _Flight:
    """A pushed message, until the server pulls its outcome."""

    message: Message
    version: int  # of the model it carries (its server-round - 1)
    row: ClientRow
    clock: Round
    index: int  # in its clock's rows
    reply: tuple[Message, np.ndarray | None] | None  # what the device sends back, once computed
    expires_s: float  # dispatch + time-to-live

    def outcome_known(self, now: float) -> bool:
        return now >= self.expires_s or (self.clock.arrivals[self.index].triggered and self.row.status != "straggler")


def _phase(msg: Message) -> str:
    return "train" if msg.metadata.message_type.startswith("train") else "evaluate"


def _arrays(content: RecordDict) -> list[tuple[str, ArrayRecord]]:
    return [(k, v) for k, v in content.items() if isinstance(v, ArrayRecord)]


def _values(content: RecordDict) -> int:
    return sum(array_view(arr).size for _, rec in _arrays(content) for arr in rec.values())


def message_bytes(content: RecordDict) -> int:
    """Bytes the message's arrays occupy serialised (as Flower counts them)."""
    return sum(rec.count_bytes() for _, rec in _arrays(content))


def _data_positions(content: RecordDict, positions: np.ndarray) -> np.ndarray:
    """Map bit positions in the serialised payload (each array's npy bytes and its key, in
    order) to positions in the concatenated numeric data. Flips that land on an npy header
    or a key are dropped: that framing travels in the packet header, under its CRC."""
    keep, data_start, offset = [], 0, 0
    for _, rec in _arrays(content):
        for name, arr in rec.items():
            nbytes = array_view(arr).nbytes
            header = len(arr.data) - nbytes
            lo, hi = (offset + header) * 8, (offset + header + nbytes) * 8
            inside = positions[(positions >= lo) & (positions < hi)]
            keep.append(inside - lo + data_start * 8)
            data_start += nbytes
            offset += len(arr.data) + len(name)
    return np.concatenate(keep) if keep else np.zeros(0, dtype=np.int64)


def _corrupted(content: RecordDict, positions: np.ndarray) -> RecordDict:
    """A copy of `content` with bit flips applied to the real array data."""
    arrays = [array_view(arr) for _, rec in _arrays(content) for arr in rec.values()]
    flipped = iter(corrupt_arrays(arrays, positions))
    out = RecordDict()
    for key, value in content.items():
        if isinstance(value, ArrayRecord):
            value = ArrayRecord({name: Array(next(flipped)) for name in value})
        out[key] = value
    return out


def _deliver(content: RecordDict, outcome: TransferOutcome) -> tuple[RecordDict, int]:
    """What arrives: the content, with the raw channel's flips applied; and the flip count."""
    if outcome.flip_positions.size == 0:
        return content, 0
    positions = _data_positions(content, outcome.flip_positions)
    if positions.size == 0:
        return content, 0
    return _corrupted(content, positions), int(positions.size)


class SimGrid(Grid):
    """A Grid over the simulated fleet: node `i + 1` is device `i` holding partition `i`.

    All of a run's phases play on the one clock of `net`; a device still working when the next
    phase starts stays busy. `get_node_ids` offers the devices online, charged and idle now
    (`offer="idle"`), or every registered device (`offer="all"`: those that cannot take part are
    reported `busy`, `offline` or `battery_depleted`); when fewer than `min_nodes` are on offer
    the server waits for them in simulated time. The server's aggregation and evaluation run on
    `server` between phases.
    """

    def __init__(
        self,
        *,
        fleet: Fleet,
        net: Network,
        server: Server,
        client_app,
        seed: int,
        backend: Backend | None = None,
        run_config: dict | None = None,
        offer: str = "idle",
        min_nodes: int = 1,
        time_budget_s: float | None = None,
    ):
        self.fleet, self.net, self.server = fleet, net, server
        self.client_app = client_app
        self.seed = seed
        self.backend = backend or LocalBackend()
        self.run_config = dict(run_config or {})
        self.offer, self.min_nodes = offer, min_nodes
        self.time_budget_s = time_budget_s
        self.phases: list[PhaseStats] = []
        self.versions: list[VersionStats] = []  # of push/pull runs: version 1, 2, ... (and the one being built)
        self.version = 0  # the latest the server is known to hold
        self._flights: dict[str, _Flight] = {}  # pushed, outcome not yet pulled
        self._closed = 0  # the latest version whose record is complete
        self._told = False  # the server marks its versions itself (else: read off its pushes)
        self.pushed = False  # the server used push/pull: rounds.csv has a row per version
        self.observer = None  # called with each finished PhaseStats (progress bars)
        self.on_version = None  # called with each new server version of a push/pull run
        self.server_flops = 0  # work the server owes before it can send again
        self.stopped_at: float | None = None  # when the fleet could no longer offer enough devices
        self._working: list = []  # the devices' processes not yet known to be over
        self._run = Run.create_empty(run_id=RUN_ID)
        self._contexts: dict[int, Context] = {}
        self._next_id = 0
        self._round = 0
        self._pushing = False
        self._sent: dict[tuple, int] = {}  # messages pushed, by (server-round, node, phase)

    @property
    def ledger(self) -> EnergyLedger:
        return self.net.ledger

    @property
    def now_s(self) -> float:
        return self.net.env.now

    # --- Grid interface -------------------------------------------------------------
    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        return self._run

    def create_message(
        self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str, ttl: float | None = None
    ) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        self.settle()
        self._check_budget()
        if self.offer == "all":
            return range(1, len(self.fleet) + 1)
        offered = self.net.offered()
        if self._flights:  # messages are out: the server can pull them rather than wait for devices
            return (offered + 1).tolist()
        wait_s, since = 1.0, self.now_s
        while len(offered) < self.min_nodes:  # the server waits, on the clock, for enough devices
            alive = self.ledger.devices_alive(self.now_s)
            if alive < self.min_nodes or self.now_s - since > WAIT_LIMIT_S:
                self.stopped_at = since  # the run ends where the wait began
                raise FleetExhausted(
                    f"{alive} devices left with charge, the strategy needs {self.min_nodes}"
                    if alive < self.min_nodes
                    else f"fewer than {self.min_nodes} devices online and idle for {WAIT_LIMIT_S / 86400:.0f} "
                    "simulated days"
                )
            self.net.env.run(until=self.now_s + wait_s)
            wait_s = min(wait_s * 2, 3600.0)
            offered = self.net.offered()
        return (offered + 1).tolist()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        """Send `messages` now; returns their ids at once (the devices work on the clock)."""
        messages = sorted(messages, key=lambda m: m.metadata.dst_node_id)
        if not messages:
            return []
        self.settle()
        self._check_budget()
        self.pushed = True
        ids = []
        for ttl in sorted({m.metadata.ttl for m in messages}):  # one clock per time-to-live
            batch = [m for m in messages if m.metadata.ttl == ttl]
            phase = _phase(batch[0])
            rnd = self._round_of(batch[0], phase)
            for msg in batch:
                self._identify(msg, rnd, phase)
            self._pushing = True
            try:
                stats, plans, replies, clock = self._launch(batch, ttl, rnd, phase)
            finally:
                self._pushing = False
            for msg in batch:
                key = (rnd, int(msg.metadata.dst_node_id), phase)
                self._sent[key] = self._sent.get(key, 0) + 1
            self.phases.append(stats)
            if phase == "train":
                self.mark_version(rnd - 1, told=False)  # the model it carries exists
                self._close_versions()
            building = self._building()
            for i, (msg, plan, row) in enumerate(zip(batch, plans, stats.clients)):
                mid = msg.metadata.message_id
                expires = self.now_s + ttl
                self._flights[mid] = _Flight(msg, rnd - 1, row, clock, i, replies.get(plan.node_id), expires)
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

    def mark_version(self, version: int, *, told: bool = True) -> None:
        """The server holds model `version` now: replies pulled from here on are counted stale
        against it. Its record is closed at the server's next grid call (`_close_versions`).
        `told`: the server said so (its evaluation); else the grid read it off a pushed message."""
        self._told |= told
        if version > self.version:
            self.version = version
            if self.on_version is not None and self.pushed:
                self.on_version(version)

    def _close_versions(self) -> None:
        """The versions the server made since its last grid call, with the replies it pulled
        before them: one version took them all (FedBuff's buffer); several took one each, in
        the order pulled (FedAsync), and what is left waits for the next. Their time: now,
        once the server's work on them is done."""
        if not self.pushed:
            self._closed = self.version
        if self.version <= self._closed:
            return
        pending, made = self._building(), self.version - self._closed
        made_versions = [pending] if made == 1 else [VersionStats(self._closed + 1 + k) for k in range(made)]
        if made > 1:
            made_versions[0].sent = pending.sent
            made_versions[0].eval_metrics = pending.eval_metrics
            for v in made_versions:
                if pending.applied:
                    row, act = pending.applied.pop(0), pending.activations.pop(0)
                    pending.returned.remove(row)
                    v.applied.append(row)
                    v.activations.append(act)
                    v.returned.append(row)
            left = [r for r in pending.returned if r not in pending.applied]
            made_versions[0].returned = left + made_versions[0].returned
            pending.returned, pending.sent, pending.eval_metrics = list(pending.applied), [], []
        pending.version = self.version
        for v in made_versions:
            v.time_s = self.now_s
        self.versions[-1:] = made_versions
        self._closed = self.version
        if made > 1 and pending.applied:  # pulled, not yet taken in
            pending.version = self._closed + 1
            self.versions.append(pending)

    def _building(self) -> VersionStats:
        """The record of the next version: the messages sent and the outcomes pulled now."""
        if not self.versions or self.versions[-1].version <= self._closed:
            self.versions.append(VersionStats(self._closed + 1))
        return self.versions[-1]

    def settle(self) -> None:
        """The server does the work it owes (aggregation, evaluation) on the clock."""
        if self.server_flops:
            env = self.net.env
            env.run(until=env.process(self.server.compute(self.server_flops)))
            self.server_flops = 0
            if self.phases:  # the phase ends when the server has taken in (and evaluated) its replies
                self.phases[-1].end_s = self.now_s
        self._close_versions()

    def finish(self) -> float:
        """The run is over: the server's last work, then the devices still working finish
        theirs (and spend its energy). Returns when the run ended (the server's last act)."""
        if self.stopped_at is not None:  # the fleet gave out: nothing after the wait began counts
            self.ledger.close(self.stopped_at)
            self._abandon()
            return self.stopped_at
        self.settle()
        end_s = self.now_s
        env = self.net.env
        env.run(until=env.all_of(self._working))  # not env.run(): a device's pending "offline at" timer is no work
        self.ledger.close(self.now_s)
        self._abandon()
        return end_s

    def _abandon(self) -> None:
        """The server stopped: outcomes it never pulled, and replies it pulled but never
        aggregated (a partial buffer), were work done for nothing (`abandoned`); they count
        with the last version."""
        rows = [f.row for f in self._flights.values()]
        for row in rows:
            if row.status in ("", "received", "straggler"):
                row.status = "abandoned"
        self._flights.clear()
        if not self.pushed:
            return
        sent = []
        if self.versions and self.versions[-1].version > self._closed and self.versions[-1].applied and not self._told:
            # an app that never said when it made its versions: the replies it pulled after its
            # last push were taken in, by a last version it had no message to send with
            self.versions[-1].time_s = self.now_s
            self._closed = self.versions[-1].version
        if self.versions and self.versions[-1].version > self._closed:  # begun, never aggregated
            tail = self.versions.pop()
            for row in tail.applied:  # pulled, never aggregated: not an update after all
                row.status, row.staleness = "abandoned", math.nan
            rows, sent = tail.returned + rows, tail.sent
        if not self.versions:  # nothing was ever aggregated
            self.versions.append(VersionStats(0, time_s=self.now_s))
        last = self.versions[-1]
        last.returned += rows
        last.sent += sent
        if math.isnan(last.time_s):
            last.time_s = self.now_s

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        messages = sorted(messages, key=lambda m: m.metadata.dst_node_id)
        if not messages:
            return []
        self.settle()
        self._check_budget()
        phase = _phase(messages[0])
        rnd = self._round_of(messages[0], phase)
        stats, plans, replies, clock = self._launch(messages, timeout, rnd, phase)
        stats.end_s = clock.play()
        accepted = []
        for plan, row in zip(plans, stats.clients):
            if row.status == "received":
                reply, activation = replies[plan.node_id]
                accepted.append(reply)
                row.staleness = 0.0  # nothing is aggregated while the server waits
                row.age_s = row.arrival_s - row.dispatch_s
                self.server_flops += AGGREGATION_FLOPS_PER_VALUE * _values(reply.content)
                if activation is not None:
                    stats.mean_activations.append(activation)
                metrics = [v for v in reply.content.values() if isinstance(v, MetricRecord)]
                if phase == "evaluate" and metrics:
                    stats.eval_metrics.append((plan.node_id, dict(metrics[0])))
        self.phases.append(stats)
        if self.observer is not None:
            self.observer(stats)
        return accepted

    # --- internals ------------------------------------------------------------------
    def _check_budget(self) -> None:
        if self.time_budget_s is not None and self.now_s >= self.time_budget_s:
            raise TimeBudgetReached(f"workload.time_budget_s={self.time_budget_s:g} simulated seconds spent")

    def _identify(self, msg: Message, rnd: int, phase: str) -> None:
        """Give `msg` its id, as a SuperLink does when it accepts a message."""
        self._next_id += 1
        set_message_id(msg, f"{rnd}.{phase}.{msg.metadata.dst_node_id}.{self._next_id}")

    def _keys(self, rnd: int, node: int, phase: str) -> tuple:
        """The keys of a message's random draws (the link's errors, the ClientApp's torch seed):
        its server-round, node and phase, as in a synchronous round; a node pushed several
        messages of one server-round (an asynchronous server) draws anew for each after the first."""
        if not self._pushing:
            return (rnd, node, phase)
        n = self._sent.get((rnd, node, phase), 0)
        return (rnd, node, phase) if n == 0 else (rnd, node, phase, n)

    def _launch(self, messages: list[Message], deadline_s: float | None, rnd: int, phase: str):
        """Send `messages` now: the real computations of those delivered (together, on the back
        end), then each device's part as a process on the clock, the server waiting until
        `deadline_s`. Returns the phase's record, the plans, the replies by node, the clock."""
        stats = PhaseStats(rnd, phase, self.now_s, self.now_s)
        plans: list[ClientPlan] = []
        deliverable: list = []
        rows: dict[int, ClientRow] = {}
        for msg in messages:
            plans.append(self._downlink(msg, rnd, phase, deliverable))
        runs = self.backend.execute(self.client_app, [job for job, _ in deliverable])
        for (_msg, ctx, _seed), _ in deliverable:
            if len(ctx.state) == 0:  # nothing to remember: rebuilt identically next time (no per-device objects)
                self._contexts.pop(ctx.node_id, None)
        replies: dict[int, tuple[Message, np.ndarray | None]] = {}
        for (_, plan), ex in zip(deliverable, runs):
            self._uplink(plan, ex, rnd, phase, replies, rows)
        stats.clients = [rows.get(plan.node_id) or self._row(plan, rnd, phase) for plan in plans]
        for row in stats.clients:
            row.status = ""  # the clock says how each one ends
        clock = Round(self.net.env, stats.clients, deadline_s)
        self._working = [p for p in self._working if p.is_alive]
        for i, plan in enumerate(plans):
            self._working.append(self.net.env.process(client(self.net, plan, clock, i)))
        return stats, plans, replies, clock

    def _pulled(self, f: _Flight) -> Message:
        """The server learns `f`'s outcome: its reply, the device's error, or Flower's error
        reply for a message unanswered within its time-to-live."""
        del self._flights[f.message.metadata.message_id]
        row, building = f.row, self._building()
        building.returned.append(row)
        if self.now_s >= f.expires_s and not (f.clock.arrivals[f.index].triggered and row.status != "straggler"):
            reason = f"no reply within the message's ttl of {f.message.metadata.ttl:g} simulated seconds"
            return Message(Error(code=ErrorCode.REPLY_MESSAGE_UNAVAILABLE, reason=reason), reply_to=f.message)
        row.age_s = row.arrival_s - row.dispatch_s
        if row.status == "out_of_memory":
            reason = f"the work needs {row.peak_memory_bytes} bytes, the device has {row.device_memory_bytes}"
            return Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=reason), reply_to=f.message)
        reply, activation = f.reply if f.reply is not None else (None, None)
        if row.status == "error" or reply is None:
            if reply is not None and reply.has_error():
                return reply
            return Message(
                Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason="the ClientApp failed"), reply_to=f.message
            )
        self.server_flops += AGGREGATION_FLOPS_PER_VALUE * _values(reply.content)
        metrics = [v for v in reply.content.values() if isinstance(v, MetricRecord)]
        if row.phase == "evaluate":
            if metrics:
                building.eval_metrics.append((row.node_id, dict(metrics[0])))
        else:
            row.staleness = float(self.version - f.version)
            building.applied.append(row)
            building.activations.append(activation)
        return reply

    def _round_of(self, msg: Message, phase: str) -> int:
        config = msg.content.get("config") if "config" in msg.content else None
        if isinstance(config, ConfigRecord) and "server-round" in config:
            self._round = int(config["server-round"])
        elif phase == "train":
            self._round += 1
        return self._round

    def _context(self, node_id: int) -> Context:
        ctx = self._contexts.get(node_id)
        if ctx is None:
            ctx = self._contexts[node_id] = Context(
                run_id=RUN_ID,
                node_id=node_id,
                node_config={"partition-id": node_id - 1, "num-partitions": len(self.fleet)},
                state=RecordDict(),
                run_config=dict(self.run_config),
            )
        return ctx

    def _row(self, plan: ClientPlan, rnd: int, phase: str) -> ClientRow:
        d = plan.device
        down = plan.down
        return ClientRow(
            round=rnd,
            phase=phase,
            node_id=plan.node_id,
            device=self.fleet.profile_name(d),
            status="",
            download_s=0.0,
            compute_s=0.0,
            upload_s=0.0,
            energy_j=0.0,
            compute_flops=0,
            peak_memory_bytes=0,
            device_memory_bytes=int(self.fleet.memory_bytes[d]),
            bytes_down=0,
            bytes_up=0,
            attempts_down=down.attempts if down else 0,
            attempts_up=0,
            retransmissions=down.retransmissions if down else 0,
            bits_flipped=plan.down_flips,
            dispatch_s=self.now_s,
            arrival_s=math.nan,
            age_s=math.nan,
            staleness=math.nan,
        )

    def _downlink(self, msg: Message, rnd: int, phase: str, deliverable: list) -> ClientPlan:
        node = int(msg.metadata.dst_node_id)
        device = node - 1
        plan = ClientPlan(node_id=node, device=device, unavailable=self.net.unavailable(device))
        if plan.unavailable:
            return plan
        keys = self._keys(rnd, node, phase)
        plan.down = transfer(
            self.net.links(device)[1], message_bytes(msg.content), stream(self.seed, "downlink", *keys)
        )
        if not plan.down.delivered:
            return plan
        if not msg.metadata.message_id:
            self._identify(msg, rnd, phase)
        msg.content, plan.down_flips = _deliver(msg.content, plan.down)
        torch_seed = int(stream(self.seed, "torch", *keys).integers(2**62))
        deliverable.append(((msg, self._context(node), torch_seed), plan))
        return plan

    def _uplink(self, plan: ClientPlan, ex: Execution, rnd: int, phase: str, replies: dict, rows: dict) -> None:
        d = plan.device
        row = rows[plan.node_id] = self._row(plan, rnd, phase)
        row.bytes_down = plan.down.bits_sent // 8
        row.compute_flops, row.peak_memory_bytes = ex.flops, ex.peak_bytes
        plan.compute_s = self.fleet.compute_time_s(ex.flops, d)
        plan.fits = ex.peak_bytes <= int(self.fleet.memory_bytes[d])
        reply = ex.reply
        link = self.net.links(d)[0]
        if reply is None or reply.has_error() or not plan.fits:
            plan.error = plan.fits
            plan.up = transfer(link, 0, stream(self.seed, "uplink", *self._keys(rnd, plan.node_id, phase)))
            return
        activation = None
        if PROBE_KEY in reply.content:
            probe = reply.content[PROBE_KEY]
            del reply.content[PROBE_KEY]
            if isinstance(probe, ArrayRecord) and "mean-activation" in probe:
                activation = array_view(probe["mean-activation"]).astype(np.float64)
        keys = self._keys(rnd, plan.node_id, phase)
        plan.up = transfer(link, message_bytes(reply.content), stream(self.seed, "uplink", *keys))
        reply.content, flips = _deliver(reply.content, plan.up)
        row.bytes_up = plan.up.bits_sent // 8
        row.attempts_up = plan.up.attempts
        row.retransmissions += plan.up.retransmissions
        row.bits_flipped += flips
        replies[plan.node_id] = (reply, activation)

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

Here: the grid, its synchronous rounds and each message's journey; `pushpull.py` the push/pull
half; `rows.py` what is recorded (clients' rows, phases, the book of versions); `payload.py`
the payload's bytes and bit flips; `timeline.py` the devices' processes on the clock.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.supercore.run import Run

from channels import transfer
from devices import Fleet
from experiments.federated.internals import set_message_id
from sim.backends.base import Backend, Execution
from sim.backends.local import LocalBackend
from sim.federated.app import RunConfig, missing_key_error, missing_key_of
from sim.federated.faults import ClientFaults
from sim.federated.payload import Arrival, deliver, message_bytes, phase_of
from sim.federated.pushpull import AGGREGATION_FLOPS_PER_VALUE, Flight, PushPull
from sim.federated.rows import ClientRow, PhaseStats, VersionBook, VersionStats
from sim.federated.timeline import ClientPlan, Round, client
from sim.net import EnergyLedger, Network, Server
from sim.seeding import LazyStream, stream

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
WAIT_LIMIT_S = 30 * 86400.0  # how long a server waits for enough devices before the run stops


class FleetExhausted(RuntimeError):
    """Too few devices online, charged and idle for the strategy to sample, for too long."""


class TimeBudgetReached(RuntimeError):
    """The run's simulated time budget (`workload.time_budget_s`) is spent: no new work starts."""


class SimGrid(PushPull, ClientFaults, Grid):
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
        accept_non_finite: bool = False,
        client_ref: str = "",
    ):
        self.fleet, self.net, self.server = fleet, net, server
        self.client_app = client_app
        self.client_ref = client_ref  # the app as the user named it (workload.app.client), for errors
        self.seed = seed
        self.backend = backend or LocalBackend()
        self.run_config = dict(run_config or {})
        self.offer, self.min_nodes = offer, min_nodes
        self.time_budget_s = time_budget_s
        self.accept_non_finite = accept_non_finite  # replies with NaN/inf go to the server as they are
        self.model_finite: dict[int, bool] = {}  # by server version: whether the model was all finite
        self.errors: dict[str, str] = {}  # each kind of ClientApp error seen: its first message
        self.on_error = None  # called with the text of each new kind (the console's warning)
        self.phases: list[PhaseStats] = []
        self.book = VersionBook()  # the server versions of a push/pull run
        self._flights: dict[str, Flight] = {}  # pushed, outcome not yet pulled
        self.observer = None  # called with each finished PhaseStats (progress bars)
        # the built-in workload's activation probe: a train reply's weights as the client sent
        # them -> its (images, D) last hidden activations on the probe set, measured off the clock
        self.probe = None
        self.server_flops = 0  # work the server owes before it can send again
        self.stopped_at: float | None = None  # when the fleet could no longer offer enough devices
        self._working: list = []  # the devices' processes not yet known to be over
        self._run = Run.create_empty(run_id=RUN_ID)
        self._contexts: dict[int, Context] = {}
        self._next_id = 0
        self._round = 0
        self._sent: dict[tuple, int] = {}  # messages pushed, by (server-round, node, phase)

    @property
    def pushed(self) -> bool:
        """The server used push/pull: rounds.csv has a row per server version."""
        return self.book.active

    @property
    def versions(self) -> list[VersionStats]:
        return self.book.versions

    def mark_version(self, version: int) -> None:
        """The server holds model `version` now (its evaluation of it: `VersionBook.mark`)."""
        self.book.mark(version)

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

    def settle(self) -> None:
        """The server does the work it owes (aggregation, evaluation) on the clock."""
        if self.server_flops:
            env = self.net.env
            env.run(until=env.process(self.server.compute(self.server_flops)))
            self.server_flops = 0
            if self.phases:  # the phase ends when the server has taken in (and evaluated) its replies
                self.phases[-1].end_s = self.now_s
        self.book.close(self.now_s)

    def finish(self) -> float:
        """The run is over: the server's last work, then the devices still working finish
        theirs (and spend its energy). Returns when the run ended (the server's last act)."""
        if self.stopped_at is not None:  # the fleet gave out: nothing after the wait began counts
            self.ledger.close(self.stopped_at)
            self.book.finish(self._unpulled(), self.now_s)
            return self.stopped_at
        self.settle()
        end_s = self.now_s
        env = self.net.env
        env.run(until=env.all_of(self._working))  # not env.run(): a device's pending "offline at" timer is no work
        self.ledger.close(self.now_s)
        self.book.finish(self._unpulled(), self.now_s)
        return end_s

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        messages = sorted(messages, key=lambda m: m.metadata.dst_node_id)
        if not messages:
            return []
        self.settle()
        self._check_budget()
        phase = phase_of(messages[0])
        rnd = self._round_of(messages[0], phase)
        stats, plans, replies, clock = self._launch(messages, timeout, rnd, phase)
        stats.end_s = clock.play()
        accepted = []
        for plan, row in zip(plans, stats.clients):
            if row.status == "received":
                got = replies[plan.node_id]
                if self.rejects(got, row):
                    continue
                reply = got.reply
                accepted.append(reply)
                row.staleness = 0.0  # nothing is aggregated while the server waits
                row.age_s = row.arrival_s - row.dispatch_s
                self.server_flops += AGGREGATION_FLOPS_PER_VALUE * got.values
                if got.sent is not None:
                    stats.activations.append(self.probe(got.sent))
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
            raise TimeBudgetReached(f"time budget spent (workload.time_budget_s={self.time_budget_s:g} simulated s)")

    def _identify(self, msg: Message, rnd: int, phase: str) -> None:
        """Give `msg` its id, as a SuperLink does when it accepts a message."""
        self._next_id += 1
        set_message_id(msg, f"{rnd}.{phase}.{msg.metadata.dst_node_id}.{self._next_id}")

    def _keys(self, rnd: int, node: int, phase: str) -> tuple:
        """The keys of a message's random draws (the link's errors, the ClientApp's torch seed):
        its server-round, node and phase, as in a synchronous round; a node pushed several
        messages of one server-round (an asynchronous server) draws anew for each after the first."""
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
        sent: dict = {}  # the messages' contents as received: one conversion for a content they share
        for msg in messages:
            plans.append(self._downlink(msg, rnd, phase, deliverable, sent))
        replies: dict[int, Arrival] = {}

        def arrived(index: int, ex: Execution) -> None:  # in job order, while the back end runs the rest
            self._uplink(deliverable[index][1], ex, rnd, phase, replies, rows)

        self.backend.execute(self.client_app, [job for job, _ in deliverable], arrived)
        for (_msg, ctx, _seed), _ in deliverable:
            if len(ctx.state) == 0:  # nothing to remember: rebuilt identically next time (no per-device objects)
                self._contexts.pop(ctx.node_id, None)
        stats.clients = [rows.get(plan.node_id) or self._row(plan, rnd, phase) for plan in plans]
        for row in stats.clients:
            row.status = ""  # the clock says how each one ends
        clock = Round(self.net.env, stats.clients, deadline_s)
        self._working = [p for p in self._working if p.is_alive]
        for i, plan in enumerate(plans):
            self._working.append(self.net.env.process(client(self.net, plan, clock, i)))
        return stats, plans, replies, clock

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
                run_config=RunConfig(self.run_config),
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
            bytes_down=down.bits_sent // 8 if down else 0,  # on the air, a transfer that gave up included
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

    def _downlink(self, msg: Message, rnd: int, phase: str, deliverable: list, sent: dict) -> ClientPlan:
        node = int(msg.metadata.dst_node_id)
        device = node - 1
        plan = ClientPlan(node_id=node, device=device, unavailable=self.net.unavailable(device))
        if plan.unavailable:
            return plan
        keys = self._keys(rnd, node, phase)
        plan.down = transfer(
            self.net.links(device)[1], message_bytes(msg.content), LazyStream(self.seed, "downlink", *keys)
        )
        if not plan.down.delivered:
            return plan
        if not msg.metadata.message_id:
            self._identify(msg, rnd, phase)
        if phase == "train":  # the server's current model, as it sends it
            for record in msg.content.values():
                if isinstance(record, ArrayRecord):
                    self.note_model(rnd - 1, record)
        msg.content, plan.down_flips = deliver(msg.content, plan.down, sent)
        torch_seed = int(stream(self.seed, "torch", *keys).integers(2**62))
        deliverable.append(((msg, self._context(node), torch_seed), plan))
        return plan

    def _uplink(self, plan: ClientPlan, ex: Execution, rnd: int, phase: str, replies: dict, rows: dict) -> None:
        key = missing_key_of(ex.error)
        if key is not None:  # the same for every client: the run config lacks what the app reads
            raise missing_key_error(key, self.client_ref, "workload.app.client")
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
            if plan.fits:
                self._error(row, ex.error or (reply.error.reason or f"error code {reply.error.code}" if reply else ""))
            plan.up = transfer(link, 0, LazyStream(self.seed, "uplink", *self._keys(rnd, plan.node_id, phase)))
            row.bytes_up, row.attempts_up = plan.up.bits_sent // 8, plan.up.attempts  # the error report, on the air
            row.retransmissions += plan.up.retransmissions
            return
        arrays = reply.content.get("arrays") if "arrays" in reply.content else None
        probed = self.probe is not None and phase == "train" and isinstance(arrays, ArrayRecord)
        keys = self._keys(rnd, plan.node_id, phase)
        plan.up = transfer(link, message_bytes(reply.content), LazyStream(self.seed, "uplink", *keys))
        reply.content, flips = deliver(reply.content, plan.up)
        row.bytes_up = plan.up.bits_sent // 8
        row.attempts_up = plan.up.attempts
        row.retransmissions += plan.up.retransmissions
        row.bits_flipped += flips
        replies[plan.node_id] = Arrival.of(reply, arrays if probed else None)  # the weights before the uplink's flips

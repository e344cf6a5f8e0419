"""The Flower bridge: a `flwr.serverapp.grid.Grid` whose messages travel over simulated links
to simulated devices.

A strategy (or a user's unmodified ServerApp) calls `send_and_receive`; for each message the
grid decides whether the device takes part, how the download fares on its link (time,
retransmissions, or flipped bits in the real arrays), runs the real `ClientApp` in-process
under a `WorkMeter`, checks the device's memory against the measured footprint, sends the
reply up the link the same way, and plays the round on the SimPy clock with the strategy's
`timeout` as a deadline in simulated seconds. Late replies are stragglers and are withheld.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
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

__all__ = ["ClientRow", "FleetExhausted", "PhaseStats", "SimGrid", "message_bytes"]

RUN_ID = 1
SERVER_NODE_ID = 0
# a weighted mean of the replies: a multiply and an add per value of each (numpy, which no
# FLOP counter sees: counted from the sizes; robust aggregators cost more, so a lower bound)
AGGREGATION_FLOPS_PER_VALUE = 2
WAIT_LIMIT_S = 30 * 86400.0  # how long a server waits for enough devices before the run stops


class FleetExhausted(RuntimeError):
    """Too few devices online, charged and idle for the strategy to sample, for too long."""


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
    arrival_s: float


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
    ):
        self.fleet, self.net, self.server = fleet, net, server
        self.client_app = client_app
        self.seed = seed
        self.backend = backend or LocalBackend()
        self.run_config = dict(run_config or {})
        self.offer, self.min_nodes = offer, min_nodes
        self.phases: list[PhaseStats] = []
        self.observer = None  # called with each finished PhaseStats (progress bars)
        self.server_flops = 0  # work the server owes before it can send again
        self.stopped_at: float | None = None  # when the fleet could no longer offer enough devices
        self._working: list = []  # the devices' round processes not yet known to be over
        self._run = Run.create_empty(run_id=RUN_ID)
        self._contexts: dict[int, Context] = {}
        self._next_id = 0
        self._round = 0

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
        if self.offer == "all":
            return range(1, len(self.fleet) + 1)
        offered = self.net.offered()
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
        raise NotImplementedError("SimGrid delivers messages in simulated rounds: use send_and_receive")

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        raise NotImplementedError("SimGrid delivers messages in simulated rounds: use send_and_receive")

    def settle(self) -> None:
        """The server does the work it owes (aggregation, evaluation) on the clock."""
        if self.server_flops:
            env = self.net.env
            env.run(until=env.process(self.server.compute(self.server_flops)))
            self.server_flops = 0
            if self.phases:  # the phase ends when the server has taken in (and evaluated) its replies
                self.phases[-1].end_s = self.now_s

    def finish(self) -> float:
        """The run is over: the server's last work, then the devices still working finish
        theirs (and spend its energy). Returns when the run ended (the server's last act)."""
        if self.stopped_at is not None:  # the fleet gave out: nothing after the wait began counts
            self.ledger.close(self.stopped_at)
            return self.stopped_at
        self.settle()
        end_s = self.now_s
        env = self.net.env
        env.run(until=env.all_of(self._working))  # not env.run(): a device's pending "offline at" timer is no work
        self.ledger.close(self.now_s)
        return end_s

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        messages = sorted(messages, key=lambda m: m.metadata.dst_node_id)
        if not messages:
            return []
        self.settle()
        phase = "train" if messages[0].metadata.message_type.startswith("train") else "evaluate"
        rnd = self._round_of(messages[0], phase)
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
        clock = Round(self.net.env, stats.clients, timeout)
        self._working = [p for p in self._working if p.is_alive]
        for i, plan in enumerate(plans):
            self._working.append(self.net.env.process(client(self.net, plan, clock, i)))
        stats.end_s = clock.play()
        accepted = []
        for plan, row in zip(plans, stats.clients):
            if row.status == "received":
                reply, activation = replies[plan.node_id]
                accepted.append(reply)
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
            arrival_s=float("nan"),
        )

    def _downlink(self, msg: Message, rnd: int, phase: str, deliverable: list) -> ClientPlan:
        node = int(msg.metadata.dst_node_id)
        device = node - 1
        plan = ClientPlan(node_id=node, device=device, unavailable=self.net.unavailable(device))
        if plan.unavailable:
            return plan
        plan.down = transfer(
            self.net.links(device)[1], message_bytes(msg.content), stream(self.seed, "downlink", rnd, node, phase)
        )
        if not plan.down.delivered:
            return plan
        self._next_id += 1
        set_message_id(msg, f"{rnd}.{phase}.{node}.{self._next_id}")
        msg.content, plan.down_flips = _deliver(msg.content, plan.down)
        torch_seed = int(stream(self.seed, "torch", rnd, node, phase).integers(2**62))
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
            plan.up = transfer(link, 0, stream(self.seed, "uplink", rnd, plan.node_id, phase))
            return
        activation = None
        if PROBE_KEY in reply.content:
            probe = reply.content[PROBE_KEY]
            del reply.content[PROBE_KEY]
            if isinstance(probe, ArrayRecord) and "mean-activation" in probe:
                activation = array_view(probe["mean-activation"]).astype(np.float64)
        plan.up = transfer(link, message_bytes(reply.content), stream(self.seed, "uplink", rnd, plan.node_id, phase))
        reply.content, flips = _deliver(reply.content, plan.up)
        row.bytes_up = plan.up.bits_sent // 8
        row.attempts_up = plan.up.attempts
        row.retransmissions += plan.up.retransmissions
        row.bits_flipped += flips
        replies[plan.node_id] = (reply, activation)

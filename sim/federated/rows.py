"""What the federated grid records: a row per message (`ClientRow`, clients.csv), per
synchronous phase (`PhaseStats`) and per server version of a push/pull run (`VersionStats`), and
the book of those versions (`VersionBook`): how the grid learns of them and which replies each
took in."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["ClientRow", "PhaseStats", "VersionBook", "VersionStats"]


@dataclass(eq=False)  # a row is one message: moved between versions by identity, never by value
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
    error: str = ""  # the ClientApp's exception (type: message), or the error its reply carried


@dataclass
class PhaseStats:
    """What one `send_and_receive` did: one train (or evaluate) phase of a round."""

    round: int
    phase: str
    start_s: float
    end_s: float
    clients: list[ClientRow] = field(default_factory=list)
    activations: list[np.ndarray] = field(default_factory=list)  # probe activations of the received train replies
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
    activations: list[np.ndarray | None] = field(default_factory=list)  # each applied reply's probe activations
    eval_metrics: list[tuple[int, dict]] = field(default_factory=list)  # of evaluate replies pulled


class VersionBook:
    """The server versions of a push/pull run. Version v is the model the server holds after
    its v-th aggregation; the book learns of it when the server says so (`mark(told=True)`: its
    evaluation) or pushes a message tagged `server-round` v + 1 (`mark(told=False)`). The
    replies the server pulls go to the version being built (`building`); `close` settles the
    versions made since the server's last grid call, `finish` the last one when the run ends."""

    def __init__(self):
        self.versions: list[VersionStats] = []  # 1, 2, ... (and, last, the one being built)
        self.version = 0  # the latest the server is known to hold
        self.active = False  # the server pushes (a push/pull run): only then are versions recorded
        self.on_version = None  # called with each new version (progress bars)
        self._closed = 0  # the latest version whose record is complete
        self._told = False  # the server marks its versions itself (else: read off its pushes)

    def mark(self, version: int, *, told: bool = True) -> None:
        """The server holds model `version` now: replies pulled from here on are counted stale
        against it. Its record is closed at the server's next grid call (`close`)."""
        self._told |= told
        if version > self.version:
            self.version = version
            if self.on_version is not None:
                self.on_version(version)

    def building(self) -> VersionStats:
        """The record of the next version: the messages sent and the outcomes pulled now."""
        if not self.versions or self.versions[-1].version <= self._closed:
            self.versions.append(VersionStats(self._closed + 1))
        return self.versions[-1]

    def close(self, now_s: float) -> None:
        """The versions the server made since its last grid call, with the replies it pulled
        before them: one version took them all (FedBuff's buffer); several took one each, in
        the order pulled (FedAsync), and what is left waits for the next. Their time: `now_s`,
        once the server's work on them is done."""
        if not self.active:
            self._closed = self.version
        if self.version <= self._closed:
            return
        pending, made = self.building(), self.version - self._closed
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
            v.time_s = now_s
        self.versions[-1:] = made_versions
        self._closed = self.version
        if made > 1 and pending.applied:  # pulled, not yet taken in
            pending.version = self._closed + 1
            self.versions.append(pending)

    def finish(self, unpulled: list[ClientRow], now_s: float) -> None:
        """The server stopped at `now_s`: outcomes it never pulled (`unpulled`), and replies it
        pulled but never aggregated (a partial buffer), were work done for nothing
        (`abandoned`); they count with the last version."""
        for row in unpulled:
            if row.status in ("", "received", "straggler"):
                row.status = "abandoned"
        if not self.active:
            return
        rows, sent = list(unpulled), []
        tail = self.versions[-1] if self.versions and self.versions[-1].version > self._closed else None
        if tail is not None and tail.applied and not self._told:
            # an app that never said when it made its versions: the replies it pulled after its
            # last push were taken in, by a last version it had no message to send with
            tail.time_s, self._closed, tail = now_s, tail.version, None
        if tail is not None:  # begun, never aggregated
            self.versions.pop()
            for row in tail.applied:  # pulled, never aggregated: not an update after all
                row.status, row.staleness = "abandoned", math.nan
            rows, sent = tail.returned + rows, tail.sent
        if not self.versions:  # nothing was ever aggregated
            self.versions.append(VersionStats(0, time_s=now_s))
        last = self.versions[-1]
        last.returned += rows
        last.sent += sent
        if math.isnan(last.time_s):
            last.time_s = now_s

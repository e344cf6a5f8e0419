"""The journal of a federated run: every real computation (each batch of ClientApp executions,
each central evaluation) on disk as it finishes, so that an interrupted run can resume.

Resuming replays the run from its start with the journal standing in for the computations: the
strategy, the grid and the clock do again what they did (deterministic, and cheap next to the
training), while each ClientApp's reply, its context state, its FLOPs and peak memory, and each
evaluation come from disk. The model, the strategy's state, the random streams and the simulated
clock at the journal's end are therefore those of the interrupted run by construction, and the
resumed run ends byte-identical to an uninterrupted one; past the journal's end it computes (and
journals) again.

Why a replay and not a snapshot of the state at a round's end: devices may still be working then
(stragglers, as SimPy processes on the clock), and a user's ServerApp keeps its loop and its state
in its own frames; neither can be saved without pickling code, and a checkpoint must load without
running any.

Format: one numpy `.npz` per entry (loaded with `allow_pickle=False`, so loading runs no code),
holding a JSON manifest and each array's raw bytes; written to a temporary file and renamed, so an
entry is whole or absent (a write that fails is the run's one-line `OutputError`). The entries
of a run killed mid-batch end at the last whole one. A step's clients' entry is written on a
thread while the run goes on to the step's end (`Journal._write`); the next step, and the run's
end, wait for it first (`Journal.settle`), so at most one is in flight and they land in order.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Error, Message, MetricRecord, RecordDict

from experiments.common.files import atomic_path
from sim.backends.base import Backend, Done, Execution, Job, report

__all__ = ["Journal", "JournalMismatch"]


class JournalMismatch(RuntimeError):
    """The run asked for a computation other than the journal's next one (the code changed)."""


def _plain(value):
    """A record's value as JSON (bytes as base64)."""
    if isinstance(value, bytes):
        return {"b64": base64.b64encode(value).decode()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _value(doc):
    if isinstance(doc, dict):
        return base64.b64decode(doc["b64"])
    if isinstance(doc, list):
        return [_value(v) for v in doc]
    return doc


class _Blobs:
    """Array bytes kept beside the manifest, in one byte array (`blob`; one zip member however
    many arrays: a round of 500 clients' replies wrote 2,000 members, ~0.1 s a round): `add`
    returns a blob's name, `@offset:length`. Entries of earlier versions (a member per array,
    named `bN`) read as before."""

    def __init__(self, stored: dict | None = None):
        self.arrays: dict[str, np.ndarray] = stored or {}
        self._parts: list[bytes] = []
        self._size = 0

    def add(self, data: bytes) -> str:
        name = f"@{self._size}:{len(data)}"
        self._parts.append(data)
        self._size += len(data)
        return name

    def get(self, name: str) -> bytes:
        if name.startswith("@"):
            offset, length = (int(n) for n in name[1:].split(":"))
            return self.arrays["blob"][offset : offset + length].tobytes()
        return self.arrays[name].tobytes()

    def to_arrays(self) -> dict[str, np.ndarray]:
        """What the entry's file holds besides the manifest."""
        if not self._parts:
            return dict(self.arrays)
        return {**self.arrays, "blob": np.frombuffer(b"".join(self._parts), dtype=np.uint8)}


def _encode(records: RecordDict, blobs: _Blobs) -> list:
    out = []
    for name, record in records.items():
        if isinstance(record, ArrayRecord):
            arrays = [[k, a.dtype, list(a.shape), a.stype, blobs.add(a.data)] for k, a in record.items()]
            out.append([name, "arrays", arrays])
        elif isinstance(record, MetricRecord):
            out.append([name, "metrics", {k: _plain(v) for k, v in record.items()}])
        elif isinstance(record, ConfigRecord):
            out.append([name, "config", {k: _plain(v) for k, v in record.items()}])
        else:
            raise TypeError(f"a record of type {type(record).__name__} cannot be journaled")
    return out


def _decode(doc: list, blobs: _Blobs) -> RecordDict:
    records = RecordDict()
    for name, kind, payload in doc:
        if kind == "arrays":
            records[name] = ArrayRecord(
                array_dict={
                    k: Array(dtype=dtype, shape=tuple(shape), stype=stype, data=blobs.get(blob))
                    for k, dtype, shape, stype, blob in payload
                }
            )
        elif kind == "metrics":
            records[name] = MetricRecord({k: _value(v) for k, v in payload.items()})
        else:
            records[name] = ConfigRecord({k: _value(v) for k, v in payload.items()})
    return records


def digest(arrays: ArrayRecord) -> str:
    """A model's fingerprint: what a journaled evaluation was of."""
    h = hashlib.sha256()
    for key, a in arrays.items():
        h.update(f"{key}:{a.dtype}:{a.shape}".encode())
        h.update(a.data)
    return h.hexdigest()[:32]


class Journal:
    """The journal in `folder` (made on first write): replays what is there, records what is not."""

    def __init__(self, folder: Path | str):
        self.folder = Path(folder)
        self.index = 0
        self.replayed = 0  # entries taken from disk so far
        self._writing: threading.Thread | None = None  # the entry being written, if any
        self._failed: BaseException | None = None  # how it failed

    def __len__(self) -> int:
        return len(list(self.folder.glob("*.npz"))) if self.folder.is_dir() else 0

    # --- entries ------------------------------------------------------------------------
    def _path(self, kind: str) -> Path:
        return self.folder / f"{self.index:06d}-{kind}.npz"

    def _read(self, kind: str, key) -> tuple[dict, _Blobs] | None:
        path = self._path(kind)
        if not path.exists():
            if any(self.folder.glob(f"{self.index:06d}-*.npz")):
                raise JournalMismatch(f"{self.folder}: entry {self.index} is not a {kind} entry")
            return None
        with np.load(path, allow_pickle=False) as z:
            stored = {k: z[k] for k in z.files}
        manifest = json.loads(stored.pop("manifest").tobytes())
        if manifest["key"] != key:
            raise JournalMismatch(f"{path}: recorded {manifest['key']!r}, the run asks for {key!r}")
        self.index += 1
        self.replayed += 1
        return manifest, _Blobs(stored)

    def _write(self, kind: str, manifest: dict, blobs: _Blobs, background: bool = False) -> None:
        """Write the entry (`background`: on a thread, while the run goes on: a round's clients'
        entry, ~10 MB at 1,000 nodes, is written while the clock plays the round out and the
        server aggregates, on a core the workers leave idle then; its file writes and checksums
        let go of the GIL). One write at a time, in order: each waits for the one before."""
        self.settle()
        path = self._path(kind)
        self.index += 1

        def write() -> None:
            try:
                arrays = {**blobs.to_arrays(), "manifest": np.frombuffer(json.dumps(manifest).encode(), dtype=np.uint8)}
                with atomic_path(path) as tmp, open(tmp, "wb") as f:
                    np.savez(f, **arrays)
            except BaseException as exc:  # raised in the run's thread by `settle`
                self._failed = exc

        if background:
            self._writing = threading.Thread(target=write, name="edgesim-journal")
            self._writing.start()
        else:
            write()
            self.settle()

    def settle(self) -> None:
        """Wait for the entry being written; its failure (an `OutputError`) is raised here."""
        if self._writing is not None:
            self._writing.join()
            self._writing = None
        failed, self._failed = self._failed, None
        if failed is not None:
            raise failed

    # --- what is journaled ----------------------------------------------------------------
    def execute(self, backend: Backend, app, jobs: Sequence[Job], done: Done | None = None) -> list[Execution]:
        """`backend.execute(app, jobs, done)`, or its journaled outcome: replies and context states.
        Each job's part of the entry is encoded as the back end reports the job (before `done`
        sees it), so the encoding overlaps the computation of the jobs after it; the entry is
        written once the step is over, on a thread (`_write`), waited for by the next step or
        `settle`."""
        key = [str(msg.metadata.message_id) for msg, _ctx, _seed in jobs]
        found = self._read("clients", key) if self.folder.is_dir() else None
        if found is not None:
            manifest, blobs = found
            runs = []
            for (msg, ctx, _seed), run in zip(jobs, manifest["runs"]):
                ctx.state = _decode(run["state"], blobs)
                runs.append(Execution(self._reply(run["reply"], msg, blobs), run["flops"], run["peak"], run["error"]))
            return report(done, runs)
        blobs = _Blobs()
        entries = []

        def journaled(index: int, ex: Execution) -> None:
            entries.append(
                {
                    "flops": int(ex.flops),
                    "peak": int(ex.peak_bytes),
                    "error": ex.error,
                    "reply": self._reply_doc(ex.reply, blobs),
                    "state": _encode(jobs[index][1].state, blobs),
                }
            )
            if done is not None:
                done(index, ex)

        self.settle()  # the entry before this one is on disk (or its failure raised) before more is computed
        runs = backend.execute(app, jobs, journaled)
        self._write("clients", {"key": key, "runs": entries}, blobs, background=True)
        return runs

    def evaluation(self, version: int, arrays: ArrayRecord, evaluate: Callable[[], tuple]) -> tuple:
        """`evaluate()` of model `version` (a tuple of numbers), or its journaled outcome."""
        key = [version, digest(arrays)]
        found = self._read("eval", key) if self.folder.is_dir() else None
        if found is not None:
            return tuple(found[0]["values"])
        values = evaluate()
        self._write("eval", {"key": key, "values": list(values)}, _Blobs())
        return values

    @staticmethod
    def _reply_doc(reply: Message | None, blobs: _Blobs):
        if reply is None:
            return None
        if reply.has_error():
            return {"error": [int(reply.error.code), reply.error.reason]}
        return {"content": _encode(reply.content, blobs)}

    @staticmethod
    def _reply(doc, msg: Message, blobs: _Blobs) -> Message | None:
        if doc is None:
            return None
        if "error" in doc:
            return Message(Error(*doc["error"]), reply_to=msg)
        return Message(_decode(doc["content"], blobs), reply_to=msg)


class JournaledBackend:
    """A back end whose `execute` goes through a journal; everything else is the back end's."""

    def __init__(self, backend: Backend, journal: Journal):
        self.backend, self.journal = backend, journal
        self.name = backend.name

    def execute(self, app, jobs: Sequence[Job], done: Done | None = None) -> list[Execution]:
        return self.journal.execute(self.backend, app, jobs, done)

    def map(self, fn, calls, seeds=None):
        return self.backend.map(fn, calls, seeds)

    def close(self) -> None:
        self.backend.close()

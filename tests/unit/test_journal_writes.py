"""A round's journal entry is written on a thread while the run goes on: whole and in order once
`settle` returns, and a write that fails is raised by `settle`, in the run's thread."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from experiments.common.files import OutputError
from sim.federated.journal import Journal, _Blobs

pytestmark = pytest.mark.unit


def _blobs(n: int) -> _Blobs:
    blobs = _Blobs()
    blobs.add(np.arange(n, dtype=np.float32).tobytes())
    return blobs


def test_background_entries_are_whole_and_in_order_once_settled(tmp_path, monkeypatch) -> None:
    journal = Journal(tmp_path / "journal")
    started: list[str] = []
    run = threading.Thread.run

    def noting(self) -> None:
        started.append(self.name)
        run(self)

    monkeypatch.setattr(threading.Thread, "run", noting)
    journal._write("clients", {"key": ["a"], "runs": []}, _blobs(1000), background=True)
    journal._write("clients", {"key": ["b"], "runs": []}, _blobs(10), background=True)  # waits for the first
    journal.settle()
    assert started == ["edgesim-journal", "edgesim-journal"]
    assert journal.index == 2 and len(journal) == 2
    replay = Journal(tmp_path / "journal")
    assert replay._read("clients", ["a"])[1].get("@0:4000") == np.arange(1000, dtype=np.float32).tobytes()
    assert replay._read("clients", ["b"]) is not None and replay.replayed == 2


def test_a_failed_background_write_is_raised_by_settle_once(tmp_path) -> None:
    (tmp_path / "file").write_text("a file where the journal's folder would go")
    journal = Journal(tmp_path / "file" / "journal")
    journal._write("clients", {"key": [], "runs": []}, _blobs(10), background=True)  # returns: the thread fails
    with pytest.raises(OutputError):
        journal.settle()
    journal.settle()  # told once
    with pytest.raises(OutputError):  # a write in the run's thread raises at once
        journal._write("eval", {"key": [1, "x"], "values": [0.5]}, _Blobs())

"""A journal entry keeps its arrays' bytes in one member; entries written the older way still read."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import ArrayRecord, MetricRecord, RecordDict

from sim.federated.journal import _Blobs, _decode, _encode

pytestmark = pytest.mark.unit


def _content() -> RecordDict:
    arrays = ArrayRecord([np.arange(6, dtype=np.float32).reshape(2, 3), np.ones(4, dtype=np.int64)])
    return RecordDict({"arrays": arrays, "metrics": MetricRecord({"loss": 0.25})})


def test_arrays_go_to_one_member_and_come_back_the_same(tmp_path) -> None:
    blobs = _Blobs()
    doc = _encode(_content(), blobs)
    stored = blobs.to_arrays()
    assert list(stored) == ["blob"]
    np.savez(tmp_path / "e.npz", **stored)
    with np.load(tmp_path / "e.npz", allow_pickle=False) as z:
        back = _decode(doc, _Blobs({k: z[k] for k in z.files}))
    want = _content()
    assert [a.numpy().tolist() for a in back["arrays"].values()] == [
        a.numpy().tolist() for a in want["arrays"].values()
    ]
    assert dict(back["metrics"]) == {"loss": 0.25}


def test_an_entry_of_the_earlier_format_reads() -> None:
    content = _content()
    doc = _encode(content, _Blobs())
    old = {}  # a member per array, named b0, b1, ... as before
    for i, entry in enumerate(doc[0][2]):
        entry[4] = f"b{i}"
        old[f"b{i}"] = np.frombuffer(list(content["arrays"].values())[i].data, dtype=np.uint8)
    back = _decode(doc, _Blobs(old))
    assert back["arrays"]["1"].numpy().tolist() == [1, 1, 1, 1]

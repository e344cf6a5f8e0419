"""Fast writes and reads of Flower's serialised arrays give exactly what Flower's own do."""

import pickle

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord

from experiments.common.models import build_model
from experiments.federated.records import ModelRecords, NpyArray, npy_array, to_array_record, to_state_dict


def _state_dict() -> dict[str, torch.Tensor]:
    sd = dict(build_model("cnn", (1, 8, 8), 10, seed=0).state_dict())
    sd.update(
        scalar=torch.tensor(2.5),
        ints=torch.arange(5),
        transposed=torch.arange(12.0).reshape(3, 4).t(),
        half=torch.ones(3, dtype=torch.float16),
    )
    return sd


def test_to_array_record_gives_flowers_bytes_and_object_ids() -> None:
    sd = _state_dict()
    ours, theirs = to_array_record(sd), ArrayRecord(sd)
    assert list(ours) == list(theirs)
    for name in theirs:
        a, b = ours[name], theirs[name]
        assert (a.dtype, tuple(a.shape), a.stype, a.data) == (b.dtype, tuple(b.shape), b.stype, b.data), name
        x, y = a.numpy(), b.numpy()
        assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y) and x.flags.writeable, name
    assert isinstance(ours["scalar"], NpyArray) and isinstance(ours["transposed"], Array)
    assert ours.count_bytes() == theirs.count_bytes()
    copy = pickle.loads(pickle.dumps(ours))  # as Ray ships it
    assert type(copy["scalar"]) is NpyArray and float(copy["scalar"].numpy()) == 2.5
    assert ours.object_id == theirs.object_id  # deflated, an NpyArray is a plain Array


def test_to_state_dict_reads_back_the_tensors() -> None:
    sd = _state_dict()
    back = to_state_dict(to_array_record(sd))
    for name, t in sd.items():
        assert torch.equal(back[name], t.contiguous()), name


def test_npy_array_direct_is_flowers_constructor_without_its_checks() -> None:
    data = np.arange(6, dtype=np.float32).tobytes()
    fast = NpyArray.direct("float32", (2, 3), data)
    slow = NpyArray(dtype="float32", shape=(2, 3), stype="numpy.ndarray", data=data)
    assert fast.__dict__ == slow.__dict__ and fast.is_dirty
    assert fast.object_id == slow.object_id and fast.deflate() == slow.deflate()
    fast.data = data[:4]  # a later change still clears what Flower caches
    assert fast.object_id != slow.object_id


def test_npy_array_is_flowers_array() -> None:
    for arr in (
        np.arange(7, dtype=np.float32),
        np.zeros((2, 3), dtype=np.int64),
        np.array(1.5),
        np.arange(6.0).reshape(2, 3).T,
    ):
        ours, theirs = npy_array(arr), Array(arr)
        assert (ours.dtype, tuple(ours.shape), ours.stype, ours.data) == (
            theirs.dtype,
            tuple(theirs.shape),
            theirs.stype,
            theirs.data,
        )
        assert ours.object_id == theirs.object_id


def test_model_records_load_what_load_state_dict_loads() -> None:
    source = {k: v + 1.0 for k, v in build_model("cnn", (1, 8, 8), 10, seed=1).state_dict().items()}
    record = ArrayRecord(source)  # Flower's own bytes, as the server's aggregate sends them
    model = build_model("cnn", (1, 8, 8), 10, seed=0)
    weights = ModelRecords(model)
    before = [p._version for p in model.parameters()]
    weights.load(record)
    fast = {k: v.clone() for k, v in model.state_dict().items()}
    assert all(p._version > v for p, v in zip(model.parameters(), before))  # autograd sees the write
    other = build_model("cnn", (1, 8, 8), 10, seed=0)
    other.load_state_dict(to_state_dict(record))
    slow = other.state_dict()
    assert fast.keys() == slow.keys() == source.keys()
    ours, theirs = weights.record(), to_array_record(model.state_dict())  # and back, as the reply carries it
    assert list(ours) == list(theirs) and all(ours[k].data == theirs[k].data for k in theirs)
    assert ours.object_id == theirs.object_id
    for k in source:
        assert torch.equal(fast[k], slow[k]) and torch.equal(fast[k], source[k]), k
    record[next(iter(record))] = Array(np.zeros(3, dtype=np.float32))  # a wrong shape: torch's own error
    with pytest.raises(RuntimeError, match="size mismatch"):
        weights.load(record)


def test_model_records_take_torchs_own_path_for_buffers_hooks_and_dtypes() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))  # BatchNorm's own loader
    source = {k: (v + 2) if v.is_floating_point() else v + 5 for k, v in model.state_dict().items()}
    weights = ModelRecords(model)
    weights.load(ArrayRecord(source))
    for k, v in model.state_dict().items():
        assert torch.equal(v, source[k]), k
    assert all(weights.record()[k].data == Array(v).data for k, v in model.state_dict().items())
    half = torch.nn.Linear(3, 2).half()  # float16 target, float32 values: load_state_dict casts
    ModelRecords(half).load(ArrayRecord({k: v.float() + 1 for k, v in half.state_dict().items()}))
    assert half.weight.dtype == torch.float16
    doubled = torch.nn.Linear(3, 2)  # a hook that changes what state_dict gives: record() gives the same
    doubled.register_state_dict_post_hook(lambda m, sd, prefix, meta: sd.update({k: v * 2 for k, v in sd.items()}))
    assert all(ModelRecords(doubled).record()[k].data == Array(v).data for k, v in doubled.state_dict().items())
    with pytest.raises(RuntimeError, match="Unexpected key"):
        ModelRecords(torch.nn.Linear(3, 2)).load(
            ArrayRecord({**torch.nn.Linear(3, 2).state_dict(), "extra": torch.ones(1)})
        )


def test_received_content_holds_the_same_arrays_read_without_np_load() -> None:
    """What a link delivers: the same records, every `.npy` array an `NpyArray` with the same
    fields and bytes (so the same sizes and object ids), read back equal and writable; the
    other records as they were; a content without plain arrays unchanged; one shared
    content converted once per memo."""
    from flwr.app import ConfigRecord, RecordDict

    from sim.federated.payload import message_bytes, received

    sd = _state_dict()
    content = RecordDict({"arrays": ArrayRecord(sd), "config": ConfigRecord({"lr": 0.1})})
    got = received(content)
    assert got is not content and list(got) == list(content) and got["config"] is content["config"]
    assert all(type(a) is NpyArray for a in got["arrays"].values())
    for name, theirs in content["arrays"].items():
        ours = got["arrays"][name]
        assert (ours.dtype, tuple(ours.shape), ours.stype, ours.data) == (
            theirs.dtype,
            tuple(theirs.shape),
            theirs.stype,
            theirs.data,
        )
        x, y = ours.numpy(), theirs.numpy()
        assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y) and x.flags.writeable, name
    assert message_bytes(got) == message_bytes(content)
    assert got["arrays"].object_id == content["arrays"].object_id
    assert received(got) is got  # nothing left to convert
    memo: dict = {}
    assert received(content, memo) is received(content, memo)
    fortran = got["arrays"]["transposed"]
    assert np.isfortran(fortran.numpy()) == np.isfortran(content["arrays"]["transposed"].numpy())

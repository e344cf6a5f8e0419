"""Fast writes and reads of Flower's serialised arrays give exactly what Flower's own do."""
import pickle

import numpy as np
import torch
from flwr.app import Array, ArrayRecord

from experiments.models import build_model
from experiments.records import NpyArray, to_array_record, to_state_dict


def _state_dict() -> dict[str, torch.Tensor]:
    sd = dict(build_model("cnn", (1, 8, 8), 10, seed=0).state_dict())
    sd.update(scalar=torch.tensor(2.5), ints=torch.arange(5), transposed=torch.arange(12.0).reshape(3, 4).t(),
              half=torch.ones(3, dtype=torch.float16))
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

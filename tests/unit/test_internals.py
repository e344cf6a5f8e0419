"""The private internals of Flower and torch in `experiments/federated/internals.py`, held to the
installed versions' behaviour: an upgrade that changes one fails here, naming it, instead of
giving silently wrong results (wrong bytes on the simulated wire, stale weights, messages with
the wrong sender or id)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.modules.module as torch_module
from flwr.app import Array, ConfigRecord, Message, RecordDict
from torch import nn

from experiments.federated.internals import (
    custom_state_dict,
    new_array,
    set_message_id,
    set_task_identity,
    task_identity,
)
from experiments.federated.records import NpyArray

# the four hook dictionaries `custom_state_dict` reads
STATE_DICT_HOOKS = {
    "_state_dict_hooks",
    "_state_dict_pre_hooks",
    "_load_state_dict_pre_hooks",
    "_load_state_dict_post_hooks",
}


# --- new_array ------------------------------------------------------------------------------
def _npy(values: np.ndarray) -> bytes:
    """The `.npy` bytes Flower's `Array` carries."""
    buf = io.BytesIO()
    np.save(buf, values, allow_pickle=False)
    return buf.getvalue()


@pytest.mark.parametrize("cls", [Array, NpyArray])
@pytest.mark.parametrize(
    ("dtype", "shape", "values"),
    [
        ("float32", (2, 3), np.arange(6, dtype=np.float32)),
        ("int64", (4,), np.array([1, -2, 3, 4])),
        ("float16", (), np.array(1.5, dtype=np.float16)),
    ],
)
def test_new_array_is_flowers_constructor(cls, dtype, shape, values) -> None:
    """Equal in every field and in its state (dirty, no cached object id), in `deflate()` bytes
    and in object id to `cls(dtype=..., shape=..., stype=..., data=...)`."""
    data = _npy(values)
    fast = new_array(cls, dtype, shape, data)
    slow = cls(dtype=dtype, shape=shape, stype="numpy.ndarray", data=data)
    assert type(fast) is cls
    assert fast.__dict__ == slow.__dict__, "Array.__init__ now sets other fields than new_array writes"
    assert fast.is_dirty and slow.is_dirty
    assert fast.deflate() == slow.deflate()
    assert fast.object_id == slow.object_id
    np.testing.assert_array_equal(fast.numpy(), slow.numpy())


def test_a_new_array_changed_later_gets_a_new_object_id() -> None:
    """Flower caches the object id of a clean array; a field written afterwards must clear it,
    for an array built by `new_array` as for one built by the constructor."""
    data, other = _npy(np.arange(4, dtype=np.float32)), _npy(np.arange(4, 8, dtype=np.float32))
    fast = new_array(Array, "float32", (4,), data)
    slow = Array(dtype="float32", shape=(4,), stype="numpy.ndarray", data=data)
    before = fast.object_id
    assert fast.object_id == slow.object_id
    fast.data, slow.data = other, other
    assert fast.object_id != before and fast.object_id == slow.object_id


# --- custom_state_dict ----------------------------------------------------------------------
def test_custom_state_dict_is_false_for_plain_layers() -> None:
    for module in (
        nn.Linear(3, 2),
        nn.Conv2d(1, 2, 3),
        nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1)),
        nn.Embedding(5, 2),
    ):
        assert not custom_state_dict(module), type(module).__name__


def test_custom_state_dict_is_true_for_batch_norm_anywhere_in_the_model() -> None:
    """BatchNorm loads through its own `_load_from_state_dict` (num_batches_tracked)."""
    assert torch.nn.BatchNorm1d._load_from_state_dict is not nn.Module._load_from_state_dict
    assert custom_state_dict(nn.BatchNorm2d(3))
    assert custom_state_dict(nn.Sequential(nn.Linear(3, 4), nn.Sequential(nn.BatchNorm1d(4))))


@pytest.mark.parametrize(
    "register",
    [
        "register_state_dict_pre_hook",
        "register_state_dict_post_hook",
        "register_load_state_dict_pre_hook",
        "register_load_state_dict_post_hook",
        "_register_state_dict_hook",
        "_register_load_state_dict_pre_hook",
    ],
)
def test_custom_state_dict_sees_every_state_dict_hook(register) -> None:
    inner = nn.Linear(3, 2)
    model = nn.Sequential(nn.Linear(2, 3), inner)
    getattr(inner, register)(lambda *args, **kwargs: None)
    assert custom_state_dict(model), f"{register} stores its hook where custom_state_dict does not look"


def test_torch_has_no_other_state_dict_hooks() -> None:
    """Every state-dict hook registration method of `nn.Module` is one tested above, every
    per-module hook dictionary one `custom_state_dict` reads, and there are no global ones."""
    registers = {n for n in dir(nn.Module) if "state_dict" in n and "register" in n}
    assert registers == {
        "register_state_dict_pre_hook",
        "register_state_dict_post_hook",
        "register_load_state_dict_pre_hook",
        "register_load_state_dict_post_hook",
        "_register_state_dict_hook",
        "_register_load_state_dict_pre_hook",
    }
    assert {k for k in vars(nn.Module()) if "state_dict" in k} == STATE_DICT_HOOKS
    assert [n for n in dir(torch_module) if n.startswith("_global") and "state_dict" in n] == []


def test_custom_state_dict_sees_overridden_save_and_load() -> None:
    class Saves(nn.Linear):
        def _save_to_state_dict(self, destination, prefix, keep_vars):
            super()._save_to_state_dict(destination, prefix, keep_vars)

    class Loads(nn.Linear):
        def _load_from_state_dict(self, *args):
            super()._load_from_state_dict(*args)

    assert custom_state_dict(nn.Sequential(Saves(2, 2)))
    assert custom_state_dict(nn.Sequential(Loads(2, 2)))


# --- task identity and message id -----------------------------------------------------------
@pytest.fixture
def restore_identity():
    before = task_identity()
    yield
    set_task_identity(before)


def test_set_task_identity_is_what_a_new_message_reads(restore_identity) -> None:
    set_task_identity((7, 8, 9))
    assert task_identity() == (7, 8, 9)
    msg = Message(RecordDict({"config": ConfigRecord({"a": 1})}), 42, "train", group_id="3")
    md = msg.metadata
    assert (md.run_id, md.src_node_id, md.src_task_id, md.dst_node_id) == (7, 8, 9, 42)
    set_task_identity((1, 2, 3))
    assert Message(RecordDict(), 5, "evaluate").metadata.src_node_id == 2


def test_set_task_identity_accepts_an_unset_identity(restore_identity) -> None:
    """A Ray worker takes the driver's identity, which may be unset (None) there."""
    set_task_identity((None, None, None))
    assert task_identity() == (None, None, None)


def test_set_message_id_is_the_id_a_message_and_its_reply_read(restore_identity) -> None:
    set_task_identity((1, 0, 1))
    msg = Message(RecordDict(), 4, "train", group_id="1")
    assert msg.metadata.message_id == ""  # Flower's own transport would assign it
    set_message_id(msg, "1.train.4.17")
    assert msg.metadata.message_id == "1.train.4.17"
    reply = Message(RecordDict(), reply_to=msg)
    assert reply.metadata.reply_to_message_id == "1.train.4.17"
    assert reply.metadata.dst_node_id == msg.metadata.src_node_id

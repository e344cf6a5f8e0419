"""Every private internal of Flower or torch the workloads' computation relies on, in one place
(the engine's own, each in one adapter of its own with its test: `sim/hydra_internals.py` for
Hydra's, `sim/torch_internals.py` for torch's lazy import of its compiler).

Each is kept for a measured gain or because no public API does it (docs/scale.md has the
figures); `tests/unit/test_internals.py` holds each to the installed version's behaviour, so an
upgrade that changes one fails there, loudly, instead of giving silently wrong results.

- `new_array`: a Flower `Array` built without `Array.__init__`'s per-field checks (a tenth of
  a client's reply in docs/scale.md's profile): it writes the instance's fields, `_is_dirty` among them.
- `custom_state_dict`: whether a module changes what `state_dict` gives or how `load_state_dict`
  takes it, read from torch's hook dictionaries and overridden methods (`ModelRecords` copies
  weights directly only when none does).
- `task_identity` / `set_task_identity`: the run, node and task a Flower `Message` built in this
  process reads as its sender (`flwr.supercore.task_identity`, not a public module).
- `set_message_id`: a delivered message's id, which Flower's own transport assigns and a
  simulated one must too (Flower's `Metadata.message_id` has no setter).
"""

from __future__ import annotations

import torch
from flwr.app import Array, Message
from flwr.supercore.task_identity import TaskIdentity

__all__ = ["custom_state_dict", "new_array", "set_message_id", "set_task_identity", "task_identity"]


def new_array(cls: type[Array], dtype: str, shape: tuple[int, ...], data: bytes) -> Array:
    """`cls(dtype=dtype, shape=shape, stype="numpy.ndarray", data=data)`: the same fields and state
    (dirty, no cached object id), without the constructor's checks."""
    arr = cls.__new__(cls)
    arr.__dict__.update(_is_dirty=True, dtype=dtype, shape=shape, stype="numpy.ndarray", data=data)
    return arr


def custom_state_dict(model: torch.nn.Module) -> bool:
    """Whether any module changes what `state_dict` gives or how `load_state_dict` takes it."""
    base = torch.nn.Module
    return any(
        m._state_dict_pre_hooks
        or m._state_dict_hooks
        or m._load_state_dict_pre_hooks
        or m._load_state_dict_post_hooks
        or type(m)._save_to_state_dict is not base._save_to_state_dict
        or type(m)._load_from_state_dict is not base._load_from_state_dict
        for m in model.modules()
    )


def task_identity() -> tuple[int | None, int | None, int | None]:
    """(run id, node id, task id) of this process's Flower task."""
    return TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id


def set_task_identity(identity: tuple[int | None, int | None, int | None]) -> None:
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = identity


def set_message_id(message: Message, message_id: str) -> None:
    message.metadata.__dict__["_message_id"] = message_id

"""A GPU emulated on the CPU, to check without one that `torch_device=cuda` moves a computation
onto the GPU and never mixes devices the way CUDA refuses to.

Inside `EmulatedDevice()`, torch says one CUDA device is available; every tensor moved there
(`tensor.to("cuda")`, `module.to(device)`, `.cuda()`, a factory given `device=`) is a copy on the
CPU that is *marked*, and reports `cuda:0` as its device. The marks follow the values: an
operation on a marked tensor gives marked results (the backward's gradients and the
optimiser's updates included); `.cpu()` or `.to("cpu")` gives an unmarked copy. The rules are
CUDA's: an operation may not mix a marked tensor with an unmarked one, except a CPU scalar
(0-dim), CPU indices into a GPU tensor, and copies; `.numpy()` of a marked tensor is refused,
and so is `torch.save` of one. A breach raises `DeviceMixError` naming the operation. What it
cannot see: code that runs in another process (a test uses the local back end), and the
numerical differences of a real GPU.

Marks live on storages, kept alive while marked (a freed address cannot pass its mark on);
storages only this instrument still holds are let go now and then.
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from unittest import mock

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

__all__ = ["DeviceMixError", "EmulatedDevice"]

_aten = torch.ops.aten
# operations that CUDA runs across devices (copies), or whose tensor arguments other than the
# first may stay on the CPU (indices), or that only read a value back
_COPIES = {_aten.copy_.default, _aten._to_copy.default, _aten._local_scalar_dense.default}
_INDEXING = {_aten.index.Tensor}
_INDEX_PUT = {_aten.index_put_.default, _aten.index_put.default, _aten._index_put_impl_.default}
_SWEEP_EVERY = 4096


class DeviceMixError(RuntimeError):
    """An operation mixed tensors on the emulated device with tensors on the CPU."""


def _tensors(obj) -> list[torch.Tensor]:
    return [t for t in tree_leaves(obj) if isinstance(t, torch.Tensor)]


class _Marks:
    def __init__(self) -> None:
        self.storages: dict[int, torch.UntypedStorage] = {}
        self.added = 0

    @staticmethod
    def _key(t: torch.Tensor) -> int:
        if not isinstance(t, torch.Tensor):
            return 0
        while torch._C._functorch.is_functorch_wrapped_tensor(t):  # inside vmap or grad: the tensor within
            t = torch._C._functorch.get_unwrapped(t)
        try:  # (not `t.device`: the emulation answers for it)
            return t.untyped_storage().data_ptr()
        except (RuntimeError, NotImplementedError):
            return 0

    def marked(self, t: torch.Tensor) -> bool:
        key = self._key(t)
        return key != 0 and key in self.storages

    def mark(self, t: torch.Tensor) -> None:
        key = self._key(t)
        if key != 0 and key not in self.storages:
            self.storages[key] = t.untyped_storage()
            self.added += 1
            if self.added % _SWEEP_EVERY == 0:
                self._sweep()

    def unmark(self, t: torch.Tensor) -> None:
        self.storages.pop(self._key(t), None)

    def _sweep(self) -> None:
        """Let go of the storages nothing but this instrument holds (their marks go with them)."""
        for key, s in list(self.storages.items()):
            if torch._C._storage_Use_Count(s._cdata) <= 1:
                del self.storages[key]


class _Propagate(TorchDispatchMode):
    """Every aten operation (forward, backward, optimiser): refuse a mix, mark what a marked input gives."""

    def __init__(self, marks: _Marks) -> None:
        super().__init__()
        self.marks = marks

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        packet = func._overloadpacket
        if func in _COPIES:
            out = func(*args, **kwargs)
            if func is _aten._to_copy.default and self.marks.marked(args[0]):
                for t in _tensors(out):
                    self.marks.mark(t)
            return out
        if func in _INDEXING or func in _INDEX_PUT:  # CPU indices may index a GPU tensor, not the reverse
            indices = [t for t in args[1] if isinstance(t, torch.Tensor)]
            if not self.marks.marked(args[0]) and any(self.marks.marked(t) for t in indices):
                raise DeviceMixError(f"{packet.__name__}: GPU indices into a CPU tensor {tuple(args[0].shape)}")
            checked = [args[0]] if func in _INDEXING else [args[0], args[2]]
        else:
            checked = _tensors((args, kwargs))
        on = [t for t in checked if self.marks.marked(t)]
        off = [t for t in checked if not self.marks.marked(t) and t.dim() > 0 and t.numel() > 0]
        if on and off:
            shapes = ", ".join(f"{'device' if self.marks.marked(t) else 'cpu'} {tuple(t.shape)}" for t in checked)
            raise DeviceMixError(f"{packet.__name__} mixes the device with the CPU: {shapes}")
        out = func(*args, **kwargs)
        if on and not func._schema.is_mutable:
            for t in _tensors(out):
                self.marks.mark(t)
        return out


_CUDA = torch.device("cuda", 0)


def _is_cuda(device) -> bool:
    return device is not None and torch.device(device).type == "cuda"


class _Moves(TorchFunctionMode):
    """The emulated GPU as the code sees it: a marked tensor's `.device` is `cuda:0`; a move to
    CUDA (`.to`, `.cuda()`, a factory's `device=`) is a marked copy on the CPU, a move to the CPU
    (`.cpu()`, `.to("cpu")`) an unmarked one; `.numpy()` (or numpy's `__array__`) of a marked
    tensor is refused, and so is `torch.save` of one (it would load onto a GPU)."""

    def __init__(self, marks: _Marks) -> None:
        super().__init__()
        self.marks = marks

    def _to(self, t: torch.Tensor, device, dtype, copy: bool) -> torch.Tensor:
        marked = self.marks.marked(t)
        if _is_cuda(device):
            if marked and (dtype is None or dtype == t.dtype) and not copy:
                return t
            out = t.to("cpu", dtype or t.dtype, copy=True)
            self.marks.mark(out)
            return out
        if not marked:
            return t.to("cpu", dtype or t.dtype, copy=copy)
        out = t.to("cpu", dtype or t.dtype, copy=True)
        self.marks.unmark(out)
        return out

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func == torch.Tensor.device.__get__:
            return _CUDA if self.marks.marked(args[0]) else func(*args, **kwargs)
        if func == torch.Tensor.is_cuda.__get__:
            return self.marks.marked(args[0])
        if func is torch.Tensor.to:
            device, dtype, _, _ = torch._C._nn._parse_to(*args[1:], **kwargs)
            if device is not None:
                return self._to(args[0], device, dtype, bool(kwargs.get("copy", False)))
            return func(*args, **kwargs)
        if func is torch.Tensor.cuda:
            return self._to(args[0], _CUDA, None, False)
        if func is torch.Tensor.cpu:
            return self._to(args[0], "cpu", None, False)
        if func is torch.Tensor.__deepcopy__:  # copies the storage itself, below the operations
            out = func(*args, **kwargs)
            if self.marks.marked(args[0]):
                self.marks.mark(out)
            return out
        if func in (torch.Tensor.numpy, torch.Tensor.__array__) and self.marks.marked(args[0]):
            raise DeviceMixError(f"numpy() of a tensor on the GPU {tuple(args[0].shape)}; use .cpu() first")
        if _is_cuda(kwargs.get("device")):
            kwargs["device"] = "cpu"
            out = func(*args, **kwargs)
            for t in _tensors(out):
                self.marks.mark(t)
            return out
        return func(*args, **kwargs)


class EmulatedDevice:
    """`with EmulatedDevice() as gpu:` run a computation given `torch_device=cuda`: torch here
    says a GPU is available (one, "Emulated GPU"), tensors moved to it are marked copies on the
    CPU, a mix of devices raises `DeviceMixError`; `gpu.ran_on_device[ModuleClass]` counts the
    module calls of that class whose first input was on the GPU, `gpu.ran_on_cpu` the others.
    What `torch_device=cuda` switches on for the process (deterministic algorithms, cuDNN's
    flags) is put back on leaving."""

    def __init__(self) -> None:
        self.marks = _Marks()
        self.ran_on_device: Counter = Counter()
        self.ran_on_cpu: Counter = Counter()
        self._stack = contextlib.ExitStack()

    def _pre(self, module: nn.Module, args: tuple) -> None:
        first = next(iter(_tensors(args)), None)
        if first is not None:
            (self.ran_on_device if self.marks.marked(first) else self.ran_on_cpu)[type(module)] += 1

    def _save(self, save):
        def guarded(obj, *args, **kwargs):
            if any(self.marks.marked(t) for t in _tensors(obj)):
                raise DeviceMixError("torch.save of a tensor on the GPU (it would load onto a GPU); use .cpu() first")
            return save(obj, *args, **kwargs)

        return guarded

    def __enter__(self) -> EmulatedDevice:
        st = self._stack
        flags = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
        cudnn = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic, torch.backends.cudnn.allow_tf32)
        matmul_tf32 = torch.backends.cuda.matmul.allow_tf32
        env = os.environ.get("CUBLAS_WORKSPACE_CONFIG")

        def restore() -> None:
            torch.use_deterministic_algorithms(flags[0], warn_only=flags[1])
            torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic, torch.backends.cudnn.allow_tf32 = cudnn
            torch.backends.cuda.matmul.allow_tf32 = matmul_tf32
            if env is None:
                os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)

        st.callback(restore)
        st.enter_context(mock.patch("torch.cuda.is_available", lambda: True))
        st.enter_context(mock.patch("torch.cuda.device_count", lambda: 1))
        st.enter_context(mock.patch("torch.cuda.get_device_name", lambda device=None: "Emulated GPU"))
        st.enter_context(mock.patch("torch.save", self._save(torch.save)))
        st.enter_context(_Moves(self.marks))
        st.enter_context(_Propagate(self.marks))
        hook = nn.modules.module.register_module_forward_pre_hook(self._pre)
        st.callback(hook.remove)
        st.callback(self.marks.storages.clear)
        return self

    def __exit__(self, *exc) -> None:
        self._stack.__exit__(*exc)

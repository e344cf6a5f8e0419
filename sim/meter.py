"""Measure the work a real PyTorch computation performs: FLOPs and peak memory.

`WorkMeter` watches every top-level module call made while it is active (a global
forward hook, so it works on a user's unmodified ClientApp as well as on the built-in
one). The first time it sees a (module structure, input shapes, training) key it counts
that call's forward (and, when gradients flow, backward) FLOPs with PyTorch's own
`FlopCounterMode` on a copy of the module, and the bytes of every activation the forward
produces; later calls with the same key reuse the figures. Counting every step would make
a small CNN's training several times slower; shapes repeat, so the cache is exact.

The key holds the module's class itself (not its name), its parameter shapes and the input
shapes, so one cache can serve every job of a process: `PROCESS_COSTS` is the one the back
ends use, and a sweep's jobs run one after another in one process (Hydra's basic launcher),
or the repeated runs of a benchmark, count each shape once.
"""

from __future__ import annotations

import copy
import weakref
from dataclasses import dataclass

import torch
from torch import nn

from experiments.common.flops import count_flops

__all__ = ["PROCESS_COSTS", "CallCost", "WorkMeter", "parameter_bytes"]

PROCESS_COSTS: dict = {}  # (class, parameter shapes, input shapes, training) -> CallCost, per process


@dataclass(frozen=True)
class CallCost:
    """The measured cost of one top-level module call."""

    flops: int
    activation_bytes: int
    parameter_bytes: int


def parameter_bytes(module: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


def _tensors(obj) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _tensors(o)]
    if isinstance(obj, dict):
        return [t for o in obj.values() for t in _tensors(o)]
    return []


def _shapes(args: tuple) -> tuple:
    return tuple((tuple(t.shape), t.dtype) for t in _tensors(args))


def _measure(module: nn.Module, args: tuple, training: bool, keep: object = None) -> CallCost:
    """Count FLOPs (forward, plus backward when training) and activation bytes, on a copy
    of `module` (the copy shares `keep`, e.g. the meter its hooks belong to)."""
    twin = copy.deepcopy(module, {id(keep): keep})
    inputs = tuple(
        a.detach().clone().requires_grad_(a.requires_grad and training) if isinstance(a, torch.Tensor) else a
        for a in args
    )
    act_bytes = 0

    def count_output(_m, _inp, out):
        nonlocal act_bytes
        act_bytes += sum(t.numel() * t.element_size() for t in _tensors(out))

    leaves = [m for m in twin.modules() if not list(m.children())] or [twin]
    handles = [m.register_forward_hook(count_output) for m in leaves]

    def forward_backward() -> None:
        out = twin(*inputs)
        if training:
            outs = [t for t in _tensors(out) if t.requires_grad]
            if outs:
                torch.autograd.backward([t.sum() for t in outs])

    try:
        with torch.enable_grad() if training else torch.no_grad():
            _, flops = count_flops(forward_backward)
    finally:
        for h in handles:
            h.remove()
    return CallCost(flops, act_bytes, parameter_bytes(module))


class WorkMeter:
    """Context manager that totals the FLOPs and the peak training footprint of the
    top-level module calls made inside it.

    `peak_bytes` = parameters × (1 + gradients + optimiser copies) + activations of the
    largest call, the memory a device needs to run the same steps.
    """

    def __init__(self, cache: dict | None = None, optimizer_copies: int = 1):
        self.cache: dict = {} if cache is None else cache
        self.optimizer_copies = optimizer_copies
        self.flops = 0
        self.peak_bytes = 0
        self.calls = 0
        self._top: nn.Module | None = None
        self._top_args: tuple = ()
        self._measuring = False
        self._handles: list = []
        self._global = None  # the handle of the global pre-hook, while it is on
        self._active = False
        self._watched: weakref.WeakSet = weakref.WeakSet()  # by object, not id: ids are reused
        self._signature: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def __enter__(self) -> WorkMeter:
        # One global pre-hook spots top-level calls; each top-level module then gets its own
        # post-hook. While a top-level call runs, the global hook is off, so the calls nested
        # in it take torch's hook-free fast path; the top-level module's post-hook puts it back.
        self._active = True
        self._global = nn.modules.module.register_module_forward_pre_hook(self._pre)
        return self

    def __exit__(self, *exc) -> None:
        self._active = False
        if self._global is not None:
            self._global.remove()
            self._global = None
        for h in self._handles:
            h.remove()
        self._handles, self._watched, self._top = [], weakref.WeakSet(), None

    def _pre(self, module: nn.Module, args: tuple) -> None:
        if self._top is not None or self._measuring:
            return
        self._top, self._top_args = module, args
        if module not in self._watched:
            self._watched.add(module)
            self._handles.append(module.register_forward_hook(self._post, always_call=True))
        if self._global is not None:  # off until this call ends (`_post`)
            self._global.remove()
            self._global = None

    def _post(self, module: nn.Module, args: tuple, _out) -> None:
        if module is not self._top:
            return
        self._top = None
        if self._active and self._global is None:  # watch for the next top-level call
            self._global = nn.modules.module.register_module_forward_pre_hook(self._pre)
        self.charge(module, self._top_args)

    def charge(self, module: nn.Module, args: tuple) -> None:
        """Count one top-level call `module(*args)` as if it had run under the meter (with
        gradients flowing if they are enabled now): what a computation that does the same
        steps another way (several clients' steps at once, `experiments.federated.vectorized`) charges
        each of them, from the same cache."""
        sig = self._signature.get(module)
        if sig is None:
            params = list(module.parameters())
            sig = self._signature[module] = (
                tuple(tuple(p.shape) for p in params),
                any(p.requires_grad for p in params),
            )
        training = sig[1] and torch.is_grad_enabled()
        key = (type(module), sig[0], _shapes(args), training)
        cost = self.cache.get(key)
        if cost is None:
            self._measuring = True
            try:
                cost = self.cache[key] = _measure(module, args, training, keep=self)
            finally:
                self._measuring = False
        self.flops += cost.flops
        self.calls += 1
        state_copies = 1 + (1 + self.optimizer_copies if training else 0)
        self.peak_bytes = max(self.peak_bytes, cost.parameter_bytes * state_copies + cost.activation_bytes)

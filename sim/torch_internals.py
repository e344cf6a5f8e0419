"""What edgesim takes from torch's internals (torch 2.13): one adapter, kept apart so that a torch
release that moves them breaks here, and in tests/e2e/test_torch_internals.py, not across the project.

**torch._dynamo, imported only when something compiles** (`defer_dynamo`). torch's optimisers
import torch._dynamo, the compiler's front end, the first time one is built or stepped: ~0.9 s
of CPU on this machine (sympy, torch.fx, torch.export, FSDP...), over a third of a small run's
start and, with `backend=processes`, all of it before the first worker can start. Eager training
uses none of it. The optimiser reaches it in two ways only:

- `Optimizer.add_param_group`, `zero_grad`, `state_dict` and `load_state_dict` (and any torch
  function marked with `torch._disable_dynamo`) ask, on their first call,
  `torch._dynamo.disable(fn, recursive, wrapping=False)` for a wrapper that keeps the compiler
  out of `fn`, and keep it on `fn` (`fn.__dynamo_disable`);
- `Optimizer.step` calls `torch._dynamo.graph_break()` before and after the update.

Outside a compiled region neither changes what runs: there is no frame-evaluation hook for the
wrapper to switch off, and a graph break breaks no graph. `defer_dynamo` puts a stand-in for
torch._dynamo in `sys.modules` (torch reaches its lazy submodules through `sys.modules`) that
answers exactly those two calls without the import: `disable(fn, recursive, wrapping=False)`
gives `fn` itself back, `graph_break()` does nothing. Anything else asked of it (`torch.compile`,
a user's own `torch._dynamo.disable`, any other attribute but a dunder one, the import of a
submodule) first imports the real torch._dynamo into its place and takes back every `fn` it
handed out (their next call asks the real one for its wrapper), then answers from it. A process that compiles
nothing never imports the compiler; one that compiles gets the whole compiler, as if the
stand-in had never been there. The numbers are the same either way: the optimiser's arithmetic
does not go through torch._dynamo.

**Where torch's import is half-way** (`IMPORT_MIDPOINT`): the module whose import `sim.split`'s
command line waits for before it begins its own imports (its comment below tells why).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types

__all__ = ["IMPORT_MIDPOINT", "defer_dynamo", "dynamo_deferred"]

# **Where torch's import is past its burst of module loading**: torch 2.13's `import torch`
# loads ~1,000 modules, ~800 of them in its first half, then spends the rest registering
# operators; `torch.fx` begins at ~48% of the import's time and 61% of its modules. `sim.split`'s
# command line waits for it (why, and what it was measured to save: that module's docstring). A
# torch that no longer imports it there opens the gate when its import ends, slower but not
# wrong; tests/e2e/test_torch_internals.py checks where it comes.
IMPORT_MIDPOINT = "torch.fx"

_NAME = "torch._dynamo"


class _DeferredDynamo(types.ModuleType):
    """torch._dynamo until something needs more of it than eager training does."""

    def __init__(self, path: list[str]):
        super().__init__(_NAME, "stands in for torch._dynamo until something compiles (sim.torch_internals)")
        self.__path__ = path  # what a submodule's import is looked up in; _Finder imports the real first
        self._handed_out: list = []

    def disable(self, fn=None, recursive=True, *, reason=None, wrapping=True):
        if fn is not None and not wrapping and reason is None:  # torch._disable_dynamo's own call
            self._handed_out.append(fn)
            return fn
        return _real().disable(fn, recursive, reason=reason, wrapping=wrapping)

    def graph_break(self, msg: str = "") -> None:
        """Nothing compiles while the stand-in is there (compiling imports the real module first)."""

    def __getattr__(self, name: str):
        if name.startswith("__") and name.endswith("__"):
            # what code that walks every module asks of each (`inspect.getmodule`: `__file__`),
            # often in the middle of another import: not a use, and no moment to import the compiler
            raise AttributeError(name)
        return getattr(_real(), name)


class _Finder(importlib.abc.MetaPathFinder):
    """The import of a submodule of torch._dynamo: the real package first, then the usual search."""

    def find_spec(self, fullname, path, target=None):
        if fullname.startswith(_NAME + ".") and isinstance(sys.modules.get(_NAME), _DeferredDynamo):
            _real()
            if fullname in sys.modules:  # the package imported it: hand over that module, not a second copy
                return importlib.util.spec_from_loader(fullname, _Imported())
        return None


class _Imported(importlib.abc.Loader):
    """Loads a module that is imported already: that module, with its own spec kept."""

    def create_module(self, spec):
        module = sys.modules[spec.name]
        self._spec = module.__spec__  # the import system sets the module's __spec__ to ours next
        return module

    def exec_module(self, module) -> None:
        module.__spec__ = self._spec


_FINDER = _Finder()


def _real() -> types.ModuleType:
    """The real torch._dynamo, imported in the stand-in's place if it is there."""
    stand_in = sys.modules.get(_NAME)
    if not isinstance(stand_in, _DeferredDynamo):
        return importlib.import_module(_NAME)
    import torch

    del sys.modules[_NAME]
    if torch.__dict__.get("_dynamo") is stand_in:
        del torch._dynamo
    if _FINDER in sys.meta_path:
        sys.meta_path.remove(_FINDER)
    real = importlib.import_module(_NAME)
    for fn in stand_in._handed_out:  # their next call asks the real module for its wrapper
        if getattr(fn, "__dynamo_disable", None) is fn:
            del fn.__dynamo_disable
    stand_in._handed_out.clear()
    return real


def defer_dynamo() -> None:
    """Put the stand-in in place, unless torch._dynamo is imported (or deferred) already."""
    if _NAME in sys.modules:
        return
    spec = importlib.util.find_spec(_NAME)  # imports torch (a job has), not torch._dynamo
    sys.modules[_NAME] = _DeferredDynamo(list(spec.submodule_search_locations))
    sys.meta_path.insert(0, _FINDER)


def dynamo_deferred() -> bool:
    """Whether torch._dynamo is still the stand-in (nothing has compiled)."""
    return isinstance(sys.modules.get(_NAME), _DeferredDynamo)

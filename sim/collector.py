"""Python's cyclic garbage collector while a command starts.

Importing torch, Flower and Hydra (and torch._dynamo, which torch's first optimiser imports
unless `sim.torch_internals` defers it) makes up to some 525,000 objects that the collector
tracks, nearly all of which live as long as the process.
While they pile up, the collector walks them again and again (each full collection the whole heap
so far): ~0.5 s of a 2.3 s start on this machine, to find ~6 MiB of garbage. So a command pauses
it before its first import (`pause`, from `python -m sim` and the `edgesim` script) and a job
resumes it once torch is imported (`resume`), first moving every object alive then out of its
reach for good (`gc.freeze`): later collections walk only what the run makes, and the few MiB of
the imports' garbage stay allocated. Code that imports `sim` as a library is not affected: only
the command pauses the collector, and `resume` re-enables only a pause of its own.
"""

from __future__ import annotations

import gc

_paused = False


def pause() -> None:
    """Stop the collector until `resume` (if it is on: a caller that turned it off keeps it off)."""
    global _paused
    if gc.isenabled():
        gc.disable()
        _paused = True


def resume(freeze: bool = True) -> None:
    """After a `pause`: freeze what is alive now (unless `freeze` is false: a command that ends
    before a job began), then collect again as usual. Without a pause, nothing."""
    global _paused
    if _paused:
        _paused = False
        if freeze:
            gc.freeze()
        gc.enable()

"""Which folders a run made, so that a refused run leaves none.

Hydra makes the run's folder (and any parents it lacks) before the config can be checked. The
callback `RunFolders` (registered in `sim/conf/config.yaml`) notes, before Hydra makes them,
which of the folders on the run folder's path already exist; `discard` then removes the ones
the run made, each only while nothing is in it. (A module of its own: Hydra instantiates the
callback from `sim.rundir`, which `python -m sim`'s `__main__` shares, unlike `sim.__main__`.)
"""

from __future__ import annotations

from pathlib import Path

from hydra.experimental.callback import Callback

__all__ = ["RunFolders", "discard"]

# the run folder (absolute) and the folders on its path that existed before Hydra made it
_before: tuple[Path, frozenset[Path]] | None = None


class RunFolders(Callback):
    """Before a single run's folder is made, note which folders on its path exist."""

    def on_run_start(self, config, **kwargs) -> None:
        global _before
        from hydra.core.hydra_config import HydraConfig
        from omegaconf import OmegaConf

        try:  # the same value Hydra then makes (its `now` resolver caches per config)
            HydraConfig.instance().set_config(config)
            out = Path(str(OmegaConf.select(config, "hydra.run.dir"))).absolute()
        except Exception:  # an interpolation only the job can resolve: fall back to `discard`'s rule
            _before = None
            return
        _before = (out, frozenset(p for p in (out, *out.parents) if p.exists()))


def discard(out: Path) -> None:
    """Remove the empty folder `out` and its empty parents that the run made. Without a note
    of what existed before (or for another folder), only folders below the current one."""
    out = Path(out).absolute()
    noted = _before if _before is not None and _before[0] == out else None
    cwd = Path.cwd().absolute()
    for d in (out, *out.parents):
        made = d not in noted[1] if noted else (d != cwd and cwd in d.parents)
        if not made or not d.is_dir() or any(d.iterdir()):
            break
        d.rmdir()

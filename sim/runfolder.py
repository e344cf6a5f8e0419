"""What an output folder holds, so that a run is never lost and never overwritten by another.

`.edgesim/settings.yaml` (the settings that decide the results, written when the run starts),
`.edgesim/journal/` (a federated run's computations as they finish: `sim.federated.journal`) and
`.edgesim/complete` (written last, once every file of the run is on disk; the journal is then
removed). Running into a folder that holds a run:

- with the same settings, interrupted: the run resumes (a federated run replays its journal and
  computes on; the other workloads recompute, their trained models coming from the model cache);
- with the same settings, complete: nothing runs (a sweep rerun skips its finished jobs);
- with other settings: a one-line error; nothing is overwritten.

`resume=true` says the folder must hold an interrupted run (an error if it does not).
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from sim import yamltext
from sim.config import Config, ConfigError

__all__ = ["RunFolder", "settings_text"]

STATE = ".edgesim"
# settings that change what is shown or where it runs, never a number in a CSV
PRESENTATION = ("resume", "progress", "plots", "log_level", "tracking", "tracking_uri", "backend", "ray", "processes")


def settings_text(cfg: Config) -> str:
    """`settings.yaml`: the settings that decide the results, as YAML (`sim.yamltext`)."""
    tree = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in PRESENTATION}
    return yamltext.dump(tree, sort_keys=True)


def _first_difference(old, new, path: str = "") -> str:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new), key=str):
            if old.get(key, "(unset)") != new.get(key, "(unset)"):
                return _first_difference(old.get(key, "(unset)"), new.get(key, "(unset)"), f"{path}.{key}".lstrip("."))
    return f"{path}: {old!r} there, {new!r} now"


class RunFolder:
    """The state of the run in `out_dir`."""

    def __init__(self, out_dir: Path | str):
        self.out_dir = Path(out_dir)
        self.state = self.out_dir / STATE

    def journal(self, name: str) -> Path:
        """The journal folder of one simulation of the run (a compared strategy)."""
        return self.state / "journal" / name

    def begin(self, cfg: Config) -> str:
        """`fresh`, `resume` or `complete`, after checking that the folder's run is this one
        (`ConfigError` if not)."""
        saved, text = self.state / "settings.yaml", settings_text(cfg)
        self._existed = self.out_dir.is_dir()
        self._before = set(self.out_dir.rglob("*")) if self._existed else set()
        if not saved.exists():
            if cfg.resume:
                raise ConfigError(f"resume=true: {self.out_dir} holds no interrupted run to resume")
            shutil.rmtree(self.state / "journal", ignore_errors=True)
            from sim.report import write_text

            write_text(text, saved)
            return "fresh"
        import yaml

        old, settings = yaml.safe_load(saved.read_text()), yaml.safe_load(text)  # as each reads back from disk
        done = (self.state / "complete").exists()
        if old != settings:
            kind = "a complete" if done else "an interrupted"
            raise ConfigError(
                f"{self.out_dir} holds {kind} run with other settings ({_first_difference(old, settings)}); "
                "run into another folder (hydra.run.dir=...), or remove that one"
            )
        return "complete" if done else "resume"

    def discard(self) -> None:
        """The fresh run was refused once it had begun (a setting found wrong by the job): what it
        wrote goes (its state, its first files), what was in the folder before it stays."""
        shutil.rmtree(self.state, ignore_errors=True)
        made = [p for p in self.out_dir.rglob("*") if p not in self._before]
        for p in sorted(made, key=lambda p: len(p.parts), reverse=True):
            if p.is_dir():
                if not any(p.iterdir()):
                    p.rmdir()
            else:
                p.unlink(missing_ok=True)
        if not self._existed and self.out_dir.is_dir() and not any(self.out_dir.iterdir()):
            self.out_dir.rmdir()

    def replayable(self) -> int:
        """Journal entries on disk (computations a resumed run need not redo)."""
        return sum(1 for _ in (self.state / "journal").rglob("*.npz"))

    def complete(self) -> None:
        """Every file of the run is on disk: the journal goes, the mark of completion comes."""
        from sim.report import write_text

        shutil.rmtree(self.state / "journal", ignore_errors=True)
        write_text("", self.state / "complete")

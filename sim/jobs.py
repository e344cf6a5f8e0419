"""The registry of workloads, and the one way to validate and run a job.

A workload is one package under `sim/` (its `__init__.py` declares a `Workload`: its
`workload.*` schema from `settings.py`, the sections it reads, its validation and its job) and
one yaml in `sim/conf/workload/`. Registering it is its name in `WORKLOADS` below
(docs/extending.md).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from pathlib import Path

from sim.config import COMMON_SECTIONS, Config, ConfigError, Workload, validate_common
from sim.runfolder import RunFolder
from sim.typecheck import check_types

__all__ = ["WORKLOADS", "default_config", "refuse_unused", "render_settings", "run", "validate", "workload_of"]


class Registry(Mapping[str, Workload]):
    """Workload name -> its `Workload`, the package `sim.<name>` imported when it is first
    looked up: the command line, which registers every schema, imports them all; a job's
    process (`sim.split`), only its own (~10 ms of a small run for the five others)."""

    def __init__(self, names: tuple[str, ...]):
        self._names = names

    def __getitem__(self, name: str) -> Workload:
        if name not in self._names:
            raise KeyError(name)
        return importlib.import_module(f"sim.{name}").WORKLOAD

    def __contains__(self, name: object) -> bool:  # without importing the package
        return name in self._names

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


WORKLOADS = Registry(("federated", "nonn", "nair", "mcpipe", "offload", "dream"))


def default_config(workload: str = "federated") -> Config:
    """The defaults of a job of `workload`, as plain Python (without Hydra's config groups)."""
    return Config(workload=WORKLOADS[workload].schema())


def workload_of(cfg: Config) -> Workload:
    name = getattr(cfg.workload, "name", None)
    if name not in WORKLOADS:
        raise ConfigError(f"workload.name={name!r}: allowed: {', '.join(sorted(WORKLOADS))}")
    w = WORKLOADS[name]
    if not isinstance(cfg.workload, w.schema):  # a name changed, but not the settings it names
        raise ConfigError(
            f"workload.name={name!r}: the workload's settings are {type(cfg.workload).__name__}'s; "
            f"choose the workload as a whole: workload={name}"
        )
    return w


def refuse_unknown(cfg: Config, settings: list[str]) -> None:
    """A one-line error for a `+key=value` (or `++`) that names no setting: Hydra's `+` adds a key
    the schema does not have, which the job would then ignore (`+workload.round=5`). Dicts stay
    open (`++workload.app.run_config.x=1`, `+strategy.params.x=1`); a config group is not a key
    (`+experiment=NAME`)."""
    import dataclasses
    import difflib

    for setting in settings:
        if not setting.startswith("+"):
            continue
        key = setting.lstrip("+").partition("=")[0]
        node, path = cfg, []
        for part in key.split("."):
            if not dataclasses.is_dataclass(node):
                break  # a dict, or a config group's value: open
            names = [f.name for f in dataclasses.fields(node)]
            if part not in names:
                if not path:
                    break  # `+experiment=...`, `+hydra...`: groups and Hydra's own keys
                close = difflib.get_close_matches(part, names, n=1)
                hint = f"; did you mean {'.'.join([*path, close[0]])}?" if close else ""
                raise ConfigError(f"{setting}: {'.'.join(path)} has no setting {part!r}{hint}")
            node, path = getattr(node, part), [*path, part]


def refuse_unused(cfg: Config, settings: list[str]) -> None:
    """A one-line error for a setting the job's workload would ignore (`strategy=krum` or
    `fleet.num_devices=3` on a NoNN job): `settings` are the overrides as the user wrote them."""
    w = workload_of(cfg)
    for setting in settings:
        key = setting.lstrip("+~").partition("=")[0]
        section = key.partition(".")[0].partition("@")[0]
        if (key == "strategy" or key.startswith("strategy.params")) and cfg.compare and "strategy" in w.uses:
            if cfg.strategy.name not in cfg.compare:  # it would not run: its settings would vanish
                raise ConfigError(
                    f"{setting}: strategy {cfg.strategy.name!r} is not among compare={list(cfg.compare)}, "
                    f"so it would not run; add it: 'compare=[{','.join([*cfg.compare, cfg.strategy.name])}]'"
                )
        if section and section not in COMMON_SECTIONS and section not in w.uses:
            uses = ", ".join(sorted(w.uses))
            raise ConfigError(
                f"{setting}: the {w.name} workload does not use `{section}` (it reads workload.*, "
                f"{uses} and the common settings); remove it"
            )


def register_devices(cfg: Config) -> None:
    """The profiles of `devices.*` into the catalogue (checked as any profile is), before any
    setting that names a profile is checked."""
    import dataclasses

    from devices import DeviceProfile, register

    known = [f.name for f in dataclasses.fields(DeviceProfile) if f.name != "name"]
    for name, fields in dict(cfg.devices).items():
        if not isinstance(fields, dict):
            raise ConfigError(f"devices.{name}={fields!r}: give the profile's fields as a mapping")
        unknown = sorted(set(fields) - set(known))
        if unknown:
            raise ConfigError(f"devices.{name}.{unknown[0]}: no such field; allowed: {', '.join(known)}")
        try:
            register(DeviceProfile(name=name, **{"source": "defined in the run's config", **fields}))
        except TypeError as exc:  # a required field missing
            raise ConfigError(f"devices.{name}: {exc}".replace("DeviceProfile.__init__() ", "")) from None
        except ValueError as exc:
            raise ConfigError(f"devices.{name}: {str(exc).replace('DeviceProfile.', '')}") from None


def validate(cfg: Config) -> None:
    """Every check of a job's settings, shared and the workload's own; one-line `ConfigError`."""
    workload_of(cfg)
    check_types(cfg)  # each setting of its schema's type first: the checks below compare values
    register_devices(cfg)
    validate_common(cfg)
    from sim.net.build import validate as validate_network  # numpy and SimPy: not for the command line's checks

    validate_network(cfg)  # the medium, per-device links, availability, batteries, traces
    workload_of(cfg).validate(cfg)


def render_settings(cfg: Config) -> dict[tuple, str]:
    """The YAML texts of its settings a job of `cfg` writes (`settings.yaml`, report.html's and,
    with one strategy, `config.yaml`), rendered now, by key (`sim.yamltext`): by a split
    command's line before it sends the job, so that the job's process need not."""
    from sim import yamltext
    from sim.html import settings_text as shown
    from sim.runfolder import settings_text as state

    with yamltext.recording() as texts:
        state(cfg)
        shown(cfg)
    return texts


def run(cfg: Config, out_dir: Path | str, *, in_sweep: bool = False):
    """Validate `cfg`, run its workload's job and write its reports under `out_dir`; returns the
    summary rows. Every computation of the job runs with `torch_threads` threads, on `torch_device`."""
    from sim.backends.base import torch_threads  # torch: imported when a job runs, not for --help
    from sim.collector import resume
    from sim.console import closing, describe, start_line
    from sim.html import write_run_report
    from sim.torch_internals import defer_dynamo
    from sim.tracking import track

    resume()  # the command's start-up is over: torch and the libraries are imported
    defer_dynamo()  # torch's optimisers then train without importing the compiler: `sim.torch_internals`
    validate(cfg)
    w = workload_of(cfg)
    folder = RunFolder(out_dir)
    state = folder.begin(cfg)
    if state == "complete":
        print(f"{Path(out_dir).resolve()}: this run is complete there already; nothing to do", flush=True)
        return None
    if state == "resume":
        print(f"resuming the interrupted run in {Path(out_dir).resolve()} ({folder.replayable()} computations on disk)")
    title = describe(cfg, w.uses)
    start_line(title, out_dir)
    try:
        with torch_threads(cfg.torch_threads):
            summary = w.run(cfg, out_dir, in_sweep=in_sweep)
    except ConfigError:  # a setting refused once the job had begun: a fresh run leaves no state
        if state == "fresh":
            folder.discard()
        raise
    write_run_report(cfg, title, out_dir)
    track(cfg, out_dir, f"edgesim: {title}")
    closing(w, summary, out_dir)
    folder.complete()
    return summary

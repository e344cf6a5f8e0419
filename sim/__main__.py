"""`python -m sim [+experiment=NAME] [overrides]`: the Hydra entry point.

A thin wrapper around `sim.jobs.run`: it registers the config schemas (the common one and each
workload's), converts the composed config to typed dataclasses once, turns a bad setting into a
one-line error with exit status 2, and, after a multirun, gathers every job's summary into one
comparison.csv.
"""

from __future__ import annotations

import atexit
import contextlib
import math
import os
import sys
import warnings
from pathlib import Path

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")

_finished = False  # set by `console` once a command has ended well and closed what it wrote


def _end_now() -> None:
    """Registered before any library is imported, so it runs last at exit, after every other
    exit handler (Ray's shutdown, the worker processes' stop, logging's flush): once a command
    has finished, the process ends here instead of tearing down its modules one by one, which
    costs ~0.7 s after torch (and, if something compiled, torch._dynamo) were
    imported and saves nothing: the results are written and closed by then."""
    if _finished:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(0)


atexit.register(_end_now)
if __name__ == "__main__":  # `python -m sim` (the `edgesim` script begins in `sim.script`)
    from sim.start import begin

    begin(sys.argv[1:], may_split=True)  # the collector paused, the first CPU reading, torch first: `sim.start`
warnings.filterwarnings("ignore", category=FutureWarning, module="pyarrow.*")

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import MISSING, DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from sim import split
from sim.config import Config, ConfigError, FleetConfig
from sim.console import fail, faults_reported
from sim.hydra_internals import run_single
from sim.jobs import WORKLOADS, refuse_unknown, refuse_unused
from sim.start import CONF_DIR, check_group_choices, group_options
from sim.sweep import job_dir  # noqa: F401  (registers `edgesim_job`, the sweep folders' resolver)

# OmegaConf merges dicts: with the schema's default mix in place, `fleet=mcu` would add the
# microcontrollers to the default mix instead of replacing it. The fleet option supplies it.
# The workload option supplies `workload`, typed by its own schema (`workload/<name>_schema`).
ConfigStore.instance().store(name="base_config", node=Config(fleet=FleetConfig(mix={}), workload=MISSING))
for _w in WORKLOADS.values():
    ConfigStore.instance().store(group="workload", name=f"{_w.name}_schema", node=_w.schema)

OPEN_KEYS = ("workload.app.run_config.", "devices.")


def _discard_run_dir() -> None:
    """Remove what Hydra made for a run that was refused: its `.hydra/` folder and log, then the
    run folder and the parents the run made (`sim.rundir`), each only if nothing else is left in
    it. (Hydra makes them before the config can be checked; a rejected run should leave nothing.)
    A folder that holds an earlier run's outputs is left as it is."""
    import shutil

    from sim.rundir import discard

    hc = HydraConfig.get()
    out = Path(hc.runtime.output_dir)
    if {p.name for p in out.iterdir()} - {hc.output_subdir, f"{hc.job.name}.log"}:
        return
    if hc.output_subdir:
        shutil.rmtree(out / hc.output_subdir, ignore_errors=True)
    (out / f"{hc.job.name}.log").unlink(missing_ok=True)  # empty, or the refused run's start line
    discard(out)  # the run folder and its parents, those the run made


# Hydra's settings that place a run's outputs (composed with the config, to find its folder)
DIR_KEYS = ("hydra.run.", "hydra.sweep.", "hydra.job.")


def _composable(args: list[str]) -> list[str]:
    """The overrides to compose the config with: the job's own, and those of Hydra's settings
    that place its outputs (Hydra's other settings and flags go to Hydra alone)."""
    return [
        a
        for a in args
        if not a.startswith("-")
        and (not a.lstrip("+~").startswith(("hydra.", "hydra/")) or a.lstrip("+~").startswith(DIR_KEYS))
    ]


def refuse(exc: Exception, overrides: list[str]) -> None:
    """A config that does not compose: the one-line error naming the override, exit status 2."""
    text = str(exc)
    named = next((a for a in overrides if a in text or f"'{a.lstrip('+~').partition('=')[0]}'" in text), None)
    cause = str(exc.__cause__ or exc).strip().splitlines()[0]
    fail(f"{named}: {cause}{_as_integer(named, _composable(overrides))}" if named else cause)


def _as_integer(named: str, overrides: list[str]) -> str:
    """For a whole number written as a float where an integer is wanted (`fleet.num_devices=1e12`):
    what the checks would say of it as an integer, so that one error tells both ('' if nothing)."""
    from hydra import compose, initialize_config_dir

    from sim.jobs import validate

    key, _, value = named.partition("=")
    try:
        number = float(value)
    except ValueError:
        return ""
    if not math.isfinite(number) or number != int(number):
        return ""
    whole = f"{key}={int(number)}"
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = OmegaConf.to_object(
                compose(config_name="config", overrides=[whole if a == named else a for a in overrides])
            )
        validate(cfg)
    except ConfigError as exc:
        if str(exc).startswith(f"{key.lstrip('+~')}="):
            return f"; and as the integer {int(number)}: {str(exc).partition(': ')[2]}"
    except Exception:  # another problem: the type error alone says what to change first
        return ""
    return ""


def unwritable(folder: str | Path) -> str | None:
    """Why no file can be written in `folder` (None: one can), found by doing it: the missing
    folders made, a file created and removed in the last; whatever this made is removed again
    (Hydra makes the run's folder when it starts). As root, a folder's mode does not stop a
    write, so the answer is the truth, not a guess from permission bits."""
    import itertools
    import tempfile

    path = Path(folder)
    made: list[Path] = []
    try:
        for d in reversed(list(itertools.takewhile(lambda p: not p.exists(), (path, *path.parents)))):
            d.mkdir()
            made.append(d)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".edgesim-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        return exc.strerror or str(exc)
    finally:
        for d in reversed(made):
            with contextlib.suppress(OSError):
                d.rmdir()
    return None


def output_dir(composed: DictConfig, mode: str) -> str:
    """The folder a run (`mode` "run": `hydra.run.dir`) or a sweep ("sweep": `hydra.sweep.dir`)
    writes, from the config composed with Hydra's; a part of it that only Hydra's run fills in
    (an interpolation of its runtime) cut off, with the folder's name it is part of."""
    try:
        return str(OmegaConf.select(composed, f"hydra.{mode}.dir", throw_on_resolution_failure=True))
    except Exception:  # OmegaConf's resolution errors
        head = str(OmegaConf.to_container(composed.hydra[mode], resolve=False)["dir"]).split("${", 1)[0]
        return (head if head.endswith("/") else os.path.dirname(head)) or "."


def check_output_dir(folder: str | None, key: str) -> None:
    """Before anything runs: the output folder (`key`: hydra.run.dir or hydra.sweep.dir) must
    be writable, else the one-line error and exit status 2, as for any setting the user must
    change; nothing has run or been written (without this: Hydra's traceback on making the
    folder)."""
    if folder is None:
        return
    cause = unwritable(folder)
    if cause:
        fail(f"cannot write to {folder}: {cause} (the output folder, {key})")


def _prefix(o) -> str:
    return {"ADD": "+", "FORCE_ADD": "++", "DEL": "~"}.get(o.type.name, "")


def presweep(args: list[str]) -> tuple[str | None, list[str]]:
    """Before a sweep's first job starts, compose and check every job it will run (each
    combination of the swept values), so that a bad value in job 7 is the one-line error now,
    not after jobs 1-6 have run and written their folders. Returns the sweep's folder (as the
    first job's composed config has it) and the keys the sweep does not vary."""
    import itertools

    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from sim.jobs import validate

    overrides = [a for a in args if not a.startswith("-") and not a.lstrip("+~").startswith(("hydra.", "hydra/"))]
    dirs = [a for a in _composable(args) if a not in overrides]  # Hydra's settings that place the outputs
    folder = None
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception as exc:  # Hydra's parse errors: one line
        fail(str(exc).strip().splitlines()[0])
    choices = [
        [f"{_prefix(o)}{o.key_or_group}={v}" for v in o.sweep_string_iterator()]
        if o.is_sweep_override()
        else [o.input_line]
        for o in parsed
    ]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for job in itertools.product(*choices):
            try:
                composed = compose(config_name="config", overrides=[*job, *dirs], return_hydra_config=True)
                if folder is None:
                    folder = output_dir(composed, "sweep")
                with open_dict(composed):
                    composed.pop("hydra")
                cfg = OmegaConf.to_object(composed)
                refuse_unknown(cfg, list(job))
                refuse_unused(cfg, list(job))
                cfg.compared = compared_params(cfg)
                validate(cfg)
            except ConfigError as exc:
                fail(f"{exc} (in the sweep's job {' '.join(job)})")
            except Exception as exc:  # Hydra's composition errors
                cause = str(exc.__cause__ or exc).strip().splitlines()[0]
                fail(f"{cause} (in the sweep's job {' '.join(job)})")
    return folder, [o.key_or_group for o in parsed if not o.is_sweep_override()]


def compared_params(cfg: Config) -> dict[str, dict]:
    """The `params` Hydra composes for each compared strategy other than the selected one."""
    from hydra import compose

    out = {}
    for name in cfg.compare:
        if name != cfg.strategy.name and name in group_options("strategy"):
            node = compose(config_name="config", overrides=[f"strategy={name}"]).strategy
            out[name] = OmegaConf.to_container(node.params)
    return out


def job_main(dcfg: DictConfig) -> None:
    """One job: the composed config checked, converted to typed dataclasses, and run."""
    hc = HydraConfig.get()
    try:
        try:
            cfg: Config = OmegaConf.to_object(dcfg)
        except OmegaConfBaseException as exc:
            raise ConfigError(str(exc).splitlines()[0]) from None
        refuse_unknown(cfg, list(hc.overrides.task))
        refuse_unused(cfg, list(hc.overrides.task))
        cfg.compared = compared_params(cfg)
        with faults_reported():
            split.run(cfg, hc.runtime.output_dir, in_sweep=hc.mode == RunMode.MULTIRUN)  # here or in the job's process
    except ConfigError as exc:
        if hc.mode != RunMode.MULTIRUN:
            _discard_run_dir()
        fail(str(exc))


main = hydra.main(version_base="1.3", config_path="conf", config_name="config")(job_main)


def cli() -> None:
    """`python -m sim ...` and the `edgesim ...` console script (whose name Hydra's shell
    completion can follow: `eval "$(edgesim -sc install=bash)"`)."""
    args = sys.argv[1:]
    if "--help" in args or "-h" in args:
        from sim.help import help_text

        try:
            print(help_text(args), flush=True)
        except BrokenPipeError:  # `edgesim --help | head`: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return
    check_group_choices(args)
    opened = [f"++{a}" if a.startswith(OPEN_KEYS) else a for a in args]
    extra = []
    if "-m" in args or "--multirun" in args:
        folder, fixed = presweep(opened)
        check_output_dir(folder, "hydra.sweep.dir")
        if not any(a.startswith(("hydra.sweep.subdir=", "hydra.job.config.override_dirname")) for a in args):
            # the job folders are named by the swept overrides only (`job_dir`)
            extra = [f"hydra.job.config.override_dirname.exclude_keys=[{','.join(fixed)}]"]
    elif not any(a.startswith("-") for a in args):  # one run, no Hydra flags: one composition
        run_single(
            job_main,
            "config",
            opened,
            refused=lambda exc: refuse(exc, opened),
            composed=lambda cfg: check_output_dir(output_dir(cfg, "run"), "hydra.run.dir"),
        )
        return
    # an app's run config and the user's device profiles are open (their keys are the user's):
    # set without Hydra's `++`, as `flwr run` takes an app's config
    sys.argv[1:] = opened + extra
    main()


def console() -> None:
    """The command line (`python -m sim`, the `edgesim` script): `cli`, then, if it ended well,
    the end of the process without the interpreter's teardown (`_end_now`)."""
    global _finished
    from sim import collector
    from sim.start import begin

    begin(sys.argv[1:])  # done already by `python -m sim` and `sim.script`: then nothing more
    try:
        cli()
    finally:  # a command that ran no job (--help, a refused setting) collects again as before;
        if not split.began():  # the command line of a split command ends now: a collection (~20 ms) would only delay it
            collector.resume(freeze=False)
    _finished = True


if __name__ == "__main__":
    console()

"""`python -m sim [+experiment=NAME] [overrides]`: the Hydra entry point.

A thin wrapper around `sim.jobs.run`: it registers the config schemas (the common one and each
workload's), converts the composed config to typed dataclasses once, turns a bad setting into a
one-line error with exit status 2, and, after a multirun, gathers every job's summary into one
comparison.csv.
"""

from __future__ import annotations

import math
import os
import sys
import warnings
from pathlib import Path

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
warnings.filterwarnings("ignore", category=FutureWarning, module="pyarrow.*")

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from sim.config import Config, ConfigError, FleetConfig
from sim.jobs import WORKLOADS, refuse_unknown, refuse_unused, run

# OmegaConf merges dicts: with the schema's default mix in place, `fleet=mcu` would add the
# microcontrollers to the default mix instead of replacing it. The fleet option supplies it.
# The workload option supplies `workload`, typed by its own schema (`workload/<name>_schema`).
ConfigStore.instance().store(name="base_config", node=Config(fleet=FleetConfig(mix={}), workload=MISSING))
for _w in WORKLOADS.values():
    ConfigStore.instance().store(group="workload", name=f"{_w.name}_schema", node=_w.schema)

SETTING_COLUMNS = (
    "strategy",
    "seed",
    "dataset",
    "partition",
    "model",
    "num_devices",
    "fraction_train",
    "deadline_s",
    "channel_model",
    "channel_mode",
    "channel_ber",
    "bandwidth_bps",
    "latency_s",
    "rounds",
)

CONF_DIR = Path(__file__).resolve().parent / "conf"
OPEN_KEYS = ("workload.app.run_config.", "devices.")
GROUPS = ("fleet", "channel", "strategy", "dataset", "workload", "experiment")


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


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


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def check_group_choices(args: list[str]) -> None:
    """A one-line error for an unknown config-group option (`strategy=nosuch`), before
    Hydra's multi-line one; sweeps (`strategy=fedavg,fedprox`) are checked option by option."""
    for arg in args:
        key, eq, value = arg.lstrip("+~").partition("=")
        if not eq or key not in GROUPS:
            continue
        options = group_options(key)
        for choice in value.strip("[]").split(","):
            choice = choice.strip()
            if choice and not choice.startswith(("glob(", "choice(", "range(")) and choice not in options:
                _fail(f"{key}={choice!r}: unknown option; allowed: {', '.join(options)}")


def precheck(args: list[str]) -> None:
    """Compose the config once before Hydra does, so that a value of the wrong type or a key
    that does not exist is the one-line error naming the override (exit 2, nothing written)
    instead of Hydra's multi-line one (exit 1, a run folder left). Sweeps and Hydra's own
    flags go to Hydra as they are."""
    if any(a.startswith("-") for a in args) or any("," in a.partition("=")[2] for a in args):
        return
    from hydra import compose, initialize_config_dir

    overrides = [a for a in args if not a.lstrip("+~").startswith(("hydra.", "hydra/"))]
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            compose(config_name="config", overrides=overrides)
    except Exception as exc:  # Hydra's and OmegaConf's many kinds: one line for each
        text = str(exc)
        named = next((a for a in overrides if a in text or f"'{a.lstrip('+~').partition('=')[0]}'" in text), None)
        cause = str(exc.__cause__ or exc).strip().splitlines()[0]
        _fail(f"{named}: {cause}{_as_integer(named, overrides)}" if named else cause)


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


def _prefix(o) -> str:
    return {"ADD": "+", "FORCE_ADD": "++", "DEL": "~"}.get(o.type.name, "")


def presweep(args: list[str]) -> None:
    """Before a sweep's first job starts, compose and check every job it will run (each
    combination of the swept values), so that a bad value in job 7 is the one-line error now,
    not after jobs 1-6 have run and written their folders."""
    import itertools

    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from sim.jobs import validate

    overrides = [a for a in args if not a.startswith("-") and not a.lstrip("+~").startswith(("hydra.", "hydra/"))]
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception as exc:  # Hydra's parse errors: one line
        _fail(str(exc).strip().splitlines()[0])
    choices = [
        [f"{_prefix(o)}{o.key_or_group}={v}" for v in o.sweep_string_iterator()]
        if o.is_sweep_override()
        else [o.input_line]
        for o in parsed
    ]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for job in itertools.product(*choices):
            try:
                cfg = OmegaConf.to_object(compose(config_name="config", overrides=list(job)))
                refuse_unknown(cfg, list(job))
                refuse_unused(cfg, list(job))
                cfg.compared = compared_params(cfg)
                validate(cfg)
            except ConfigError as exc:
                _fail(f"{exc} (in the sweep's job {' '.join(job)})")
            except Exception as exc:  # Hydra's composition errors
                cause = str(exc.__cause__ or exc).strip().splitlines()[0]
                _fail(f"{cause} (in the sweep's job {' '.join(job)})")


def compared_params(cfg: Config) -> dict[str, dict]:
    """The `params` Hydra composes for each compared strategy other than the selected one."""
    from hydra import compose

    out = {}
    for name in cfg.compare:
        if name != cfg.strategy.name and name in group_options("strategy"):
            node = compose(config_name="config", overrides=[f"strategy={name}"]).strategy
            out[name] = OmegaConf.to_container(node.params)
    return out


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(dcfg: DictConfig) -> None:
    hc = HydraConfig.get()
    try:
        try:
            cfg: Config = OmegaConf.to_object(dcfg)
        except OmegaConfBaseException as exc:
            raise ConfigError(str(exc).splitlines()[0]) from None
        refuse_unknown(cfg, list(hc.overrides.task))
        refuse_unused(cfg, list(hc.overrides.task))
        cfg.compared = compared_params(cfg)
        run(cfg, hc.runtime.output_dir, in_sweep=hc.mode == RunMode.MULTIRUN)
    except ConfigError as exc:
        if hc.mode != RunMode.MULTIRUN:
            _discard_run_dir()
        _fail(str(exc))


def _swept(jobs: list[Path], named: set[str]) -> dict[str, dict[str, str]]:
    """Per job folder, `{override key: value}` for the overrides whose value differs between the
    sweep's jobs (from Hydra's `.hydra/overrides.yaml`) and that no summary column in `named`
    already gives (`channel.ber` is `channel_ber`): columns of the sweep's comparison, so a swept
    setting such as `strategy.params.buffer_size` is still there."""
    values: dict[str, dict[str, str]] = {}
    for job in jobs:
        path = job / ".hydra" / "overrides.yaml"
        if path.exists():
            pairs = (o.split("=", 1) for o in OmegaConf.load(path) if "=" in o)
            values[job.name] = {k.lstrip("+~"): v for k, v in pairs}
    keys = {k for v in values.values() for k in v}
    varying = {k for k in keys if len({v.get(k) for v in values.values()}) > 1}
    varying = {k for k in varying if k.replace(".", "_") not in named and k.split(".")[-1] not in named}
    return {job: {k: v for k, v in kv.items() if k in varying} for job, kv in values.items()}


class SweepComparison(Callback):
    """After a multirun: comparison.csv and accuracy plots over all jobs, in the sweep dir."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        import pandas as pd

        from sim.html import write_sweep_report
        from sim.report import plot_accuracy, write_csv

        sweep_dir = Path(config.hydra.sweep.dir)
        jobs = sorted((d for d in sweep_dir.iterdir() if d.is_dir() and d.name.isdigit()), key=lambda d: int(d.name))
        summaries, rounds = [], []
        paths = [p for job in jobs for p in job.rglob("summary.csv")]
        named = set(pd.read_csv(paths[0], nrows=0).columns) if paths else set()
        swept = _swept(jobs, named)  # each job's value of every override that differs between jobs
        for job in jobs:
            for path in sorted(job.rglob("summary.csv")):
                s = pd.read_csv(path).assign(job=int(job.name), **swept.get(job.name, {}))
                summaries.append(s)
                r = path.with_name("rounds.csv")
                if r.exists():
                    keys = [*SETTING_COLUMNS, *swept.get(job.name, {})]
                    values = {k: s[k].iloc[0] for k in keys if k in s}
                    rounds.append(pd.read_csv(r).assign(job=int(job.name), **values))
        if not summaries:
            return
        table = pd.concat(summaries, ignore_index=True)
        first = ["job", *dict.fromkeys(k for values in swept.values() for k in values)]
        table = table[first + [c for c in table.columns if c not in first]]
        write_csv(table, sweep_dir / "comparison.csv")
        varying = [k for k in [*SETTING_COLUMNS, *first[1:]] if k in table and table[k].nunique(dropna=False) > 1]
        varying = list(dict.fromkeys(varying))
        if rounds and config.get("plots", True):
            labels = varying or ["strategy"]
            plot_accuracy(
                pd.concat(rounds, ignore_index=True),
                labels,
                sweep_dir,
                title=f"accuracy across the sweep of {len(jobs)} jobs (by {', '.join(labels)})",
                line_keys=["job", *labels],
            )
        write_sweep_report(sweep_dir, jobs)
        print(f"sweep of {len(jobs)} jobs: {sweep_dir.resolve()} (comparison.csv, report.html)", flush=True)


def cli() -> None:
    """`python -m sim ...` and the `edgesim ...` console script (whose name Hydra's shell
    completion can follow: `eval "$(edgesim -sc install=bash)"`)."""
    args = sys.argv[1:]
    if "--help" in args or "-h" in args:
        from sim.help import help_text

        print(help_text(args))
        return
    check_group_choices(args)
    opened = [f"++{a}" if a.startswith(OPEN_KEYS) else a for a in args]
    if "-m" in args or "--multirun" in args:
        presweep(opened)
    else:
        precheck(opened)
    # an app's run config and the user's device profiles are open (their keys are the user's):
    # set without Hydra's `++`, as `flwr run` takes an app's config
    sys.argv[1:] = [f"++{a}" if a.startswith(OPEN_KEYS) else a for a in args]
    main()


if __name__ == "__main__":
    cli()

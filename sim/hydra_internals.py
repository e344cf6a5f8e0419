"""What the command line takes from Hydra's internals (hydra-core 1.3, pinned < 1.4): one adapter,
kept apart so that a Hydra release that moves them breaks here, and in
tests/e2e/test_hydra_internals.py, not across the project.

1. **Dicts given whole replace** (`fleet.mix={odroid_xu4:1}`): Hydra merges a dict override into
   the dict the config holds and has no way to replace one in a structured config (`~fleet.mix`
   cannot delete a schema's field; Hydra issue #1896). Its override step
   (`ConfigLoaderImpl._apply_overrides_to_config`, which every composition goes through: a run,
   each job of a sweep, `--cfg job`, `hydra.compose`) is wrapped so that a dict given to a setting
   of `REPLACED_DICTS` replaces it.
2. **A single run composes its config once** (`run_single`): `@hydra.main` composes it twice
   (once to read `hydra.mode`, once to run) and the command line had a third composition before
   it (to turn a bad setting into one line, exit 2, nothing written): ~0.1 s each on 2 cores, of a
   small run's ~1 s above its import floor. `run_single` does what `@hydra.main` does for a run
   without Hydra flags (the same search path, task name, composition, callbacks and `run_job`:
   the same run folder, `.hydra/` files and log), with the one composition's error in our hands.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

__all__ = ["REPLACED_DICTS", "run_single"]

# Settings whose value is a map the user gives whole (profile name -> share of the fleet, or
# joules). strategy.params, devices and an app's run_config merge, as keyword arguments and
# additions do.
REPLACED_DICTS = frozenset({"fleet.mix", "fleet.battery_j"})


def _replacing_dicts(apply):
    """Hydra's override application, except that a dict given to a setting of REPLACED_DICTS
    (`=`, `+` or `++`) replaces its value."""

    def apply_overrides(overrides, cfg) -> None:
        for o in overrides:
            value = None if o.is_delete() or o.is_sweep_override() else o.value()
            if o.key_or_group not in REPLACED_DICTS or not isinstance(value, dict):
                apply([o], cfg)
                continue
            try:
                OmegaConf.update(cfg, o.key_or_group, value, merge=False)
            except OmegaConfBaseException as exc:  # as Hydra reports a value that does not fit
                raise ConfigCompositionException(f"Error merging override {o.input_line}") from exc

    apply_overrides.replaces_dicts = True
    return apply_overrides


if not getattr(ConfigLoaderImpl._apply_overrides_to_config, "replaces_dicts", False):  # once, if imported twice
    ConfigLoaderImpl._apply_overrides_to_config = staticmethod(
        _replacing_dicts(ConfigLoaderImpl._apply_overrides_to_config)
    )


def run_single(
    task_function: Callable[[DictConfig], Any],
    config_name: str,
    overrides: list[str],
    refused: Callable[[Exception], None],
    composed: Callable[[DictConfig], None],
) -> None:
    """Run `task_function` once as `@hydra.main` runs it (`task_function` undecorated; its module
    holds the config folder `conf/` beside it), composing the config once: a composition error
    goes to `refused` (which ends the process; Hydra's global state cleared for it), the
    composed config (Hydra's part included) to `composed` before the run folder is made, then
    Hydra's `run_job` runs the task. Errors of the task are reported as Hydra reports them."""
    from hydra._internal.callbacks import Callbacks
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import (
        create_automatic_config_search_path,
        detect_calling_file_or_module_from_task_function,
        detect_task_name,
        run_and_report,
    )
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.utils import run_job
    from hydra.types import HydraContext, RunMode

    calling_file, calling_module = detect_calling_file_or_module_from_task_function(task_function)
    search_path = create_automatic_config_search_path(calling_file, calling_module, "conf")
    hydra = run_and_report(
        lambda: Hydra.create_main_hydra2(
            task_name=detect_task_name(calling_file, calling_module), config_search_path=search_path
        )
    )
    try:
        try:
            cfg = hydra.compose_config(
                config_name=config_name,
                overrides=[*overrides, "hydra.mode=RUN"],  # as `@hydra.main` adds for a run
                with_log_configuration=True,
                run_mode=RunMode.RUN,
            )
        except Exception as exc:  # Hydra's and OmegaConf's many kinds
            GlobalHydra.instance().clear()  # `refused` may compose again (with `hydra.compose`)
            refused(exc)
            raise
        composed(cfg)

        def run() -> None:
            callbacks = Callbacks(cfg)
            callbacks.on_run_start(config=cfg, config_name=config_name)
            ret = run_job(
                hydra_context=HydraContext(config_loader=hydra.config_loader, callbacks=callbacks),
                task_function=task_function,
                config=cfg,
                job_dir_key="hydra.run.dir",
                job_subdir_key=None,
                configure_logging=True,
            )
            callbacks.on_run_end(config=cfg, config_name=config_name, job_return=ret)
            _ = ret.return_value  # the task's exception, raised

        run_and_report(run)
    finally:
        GlobalHydra.instance().clear()

"""The Hydra internals the command line uses (sim/hydra_internals.py): still where hydra-core
keeps them, and a single run through `run_single` (one composition) is the run `@hydra.main`
makes (Hydra's path, taken when a Hydra flag is given: `--run`)."""

from __future__ import annotations

import inspect

import yaml
from hydra._internal.callbacks import Callbacks
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.hydra import Hydra
from hydra._internal.utils import (
    create_automatic_config_search_path,
    detect_calling_file_or_module_from_task_function,
    detect_task_name,
    run_and_report,
)
from hydra.core.utils import run_job

import sim.hydra_internals  # noqa: F401  (installs the override wrap)

from ..conftest import TINY_OVERRIDES


def test_the_internals_are_where_the_adapter_finds_them() -> None:
    assert getattr(ConfigLoaderImpl._apply_overrides_to_config, "replaces_dicts", False)
    assert set(inspect.signature(Hydra.compose_config).parameters) >= {
        "config_name",
        "overrides",
        "run_mode",
        "with_log_configuration",
    }
    assert set(inspect.signature(Hydra.create_main_hydra2).parameters) >= {"task_name", "config_search_path"}
    assert set(inspect.signature(run_job).parameters) >= {
        "hydra_context",
        "task_function",
        "config",
        "job_dir_key",
        "job_subdir_key",
        "configure_logging",
    }
    assert callable(Callbacks) and callable(run_and_report)
    assert callable(create_automatic_config_search_path) and callable(detect_task_name)
    assert callable(detect_calling_file_or_module_from_task_function)


def test_one_composition_makes_the_run_hydra_main_makes(run_sim, tmp_path) -> None:
    ours, hydras = tmp_path / "ours", tmp_path / "hydra"
    for out, flags in ((ours, []), (hydras, ["--run"])):
        res = run_sim(*flags, *TINY_OVERRIDES, "progress=false", "plots=false", f"hydra.run.dir={out}")
        assert res.returncode == 0, res.stderr[-2000:]
    for name in ("config.yaml", "overrides.yaml"):
        assert (ours / ".hydra" / name).read_text() == (hydras / ".hydra" / name).read_text(), name
    a, b = (yaml.safe_load((d / ".hydra" / "hydra.yaml").read_text())["hydra"] for d in (ours, hydras))
    assert a["run"]["dir"] == str(ours) and a["runtime"]["output_dir"] == str(ours)
    assert a["overrides"]["hydra"] == [f"hydra.run.dir={ours}", "hydra.mode=RUN"]
    for h in (a, b):  # what names the folder differs; the rest is the same
        h["run"]["dir"] = h["runtime"]["output_dir"] = h["runtime"]["cwd"] = h["overrides"] = None
    assert a == b
    assert sorted(p.name for p in ours.iterdir()) == sorted(p.name for p in hydras.iterdir())
    for csv in ours.glob("*.csv"):
        assert csv.read_bytes() == (hydras / csv.name).read_bytes(), csv.name

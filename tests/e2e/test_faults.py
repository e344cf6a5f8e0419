"""Faults a run meets, through `python -m sim`: each ends with one `error:` line and no traceback.

- an output folder that cannot be written: found before anything runs, exit 2, nothing made;
- a write that fails during the run (here a real full disk: the file's temporary name is a
  link to /dev/full): the file and the cause, exit 1, and what was on disk stays whole;
- a Ray worker that dies under a step (a ClientApp that ends its process in round 2): the back
  end named, exit 1. Ray starts a local instance of its own (about 10 s or more)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ..conftest import TINY_OVERRIDES, sim_env
from ..unit.test_output_faults import NO_SPACE
from .test_backends import _require_ray

pytestmark = [
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize(
    "args, key",
    [
        (["hydra.run.dir=/dev/null/out"], "hydra.run.dir"),
        (["compare=[fedavg,fedprox]", "hydra.run.dir=/dev/null/out"], "hydra.run.dir"),  # composed apart
        (["-m", "hydra.sweep.dir=/dev/null/sweep", "strategy=fedavg,fedprox"], "hydra.sweep.dir"),
    ],
)
def test_an_output_folder_that_cannot_be_written_is_refused_before_the_run(run_sim, tmp_path, args, key) -> None:
    out = run_sim(*TINY_OVERRIDES, *args, timeout=120)
    folder = args[-1 if key == "hydra.run.dir" else 1].split("=", 1)[1]
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.strip() == f"error: cannot write to {folder}: Not a directory (the output folder, {key})"
    assert out.stdout == ""  # nothing ran
    assert list(tmp_path.iterdir()) == []  # nothing made


def _run_with_full_disk(args: list[str], cwd: Path, prefix: str) -> subprocess.CompletedProcess:
    """`python -m sim ARGS` whose writes of files named `prefix*` meet a full disk (their
    temporary file is a link to /dev/full: ENOSPC from the kernel, as on a full disk)."""
    code = textwrap.dedent(
        f"""
        import os, sys, tempfile
        real = tempfile.mkstemp
        def mkstemp(*args, **kwargs):
            fd, name = real(*args, **kwargs)
            if os.path.basename(name).startswith({"." + prefix!r}):
                os.close(fd); os.unlink(name); os.symlink("/dev/full", name)
                fd = os.open(name, os.O_WRONLY)
            return fd, name
        tempfile.mkstemp = mkstemp
        sys.argv = ["sim", *{args!r}]
        from sim.__main__ import cli
        cli()
        """
    )
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=sim_env(), capture_output=True, text=True, timeout=300
    )


def test_a_full_disk_names_the_file_and_keeps_what_was_written(tmp_path) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.csv").write_text("an earlier run's summary\n")  # rerun into the same folder
    proc = _run_with_full_disk([*TINY_OVERRIDES, "hydra.run.dir=out"], tmp_path, prefix="summary")
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert _errors(proc.stderr) == [f"error: cannot write {out.resolve() / 'summary.csv'}: {NO_SPACE}"]
    assert (out / "summary.csv").read_text() == "an earlier run's summary\n"  # the last good one, whole
    kept = (".hydra", ".edgesim")  # Hydra's and the run's own state
    assert not [p.name for p in out.iterdir() if p.name.startswith(".") and p.name not in kept]  # no temp file
    import pandas as pd

    assert len(pd.read_csv(out / "rounds.csv")) == 2  # the files written before it: whole


def _dying_app(folder: Path) -> Path:
    """A Flower app folder: quickstart's ServerApp, and a ClientApp that ends its own process
    (os._exit) when it is asked to train in round 2."""
    folder.mkdir()
    (folder / "pyproject.toml").write_text(
        textwrap.dedent(
            """
            [tool.flwr.app.components]
            serverapp = "tests.quickstart_app.server_app:app"
            clientapp = "dying_client:app"

            [tool.flwr.app.config]
            num-server-rounds = 3
            fraction-train = 0.5
            fraction-evaluate = 0.5
            local-epochs = 1
            lr = 0.1
            batch-size = 32
            """
        )
    )
    (folder / "dying_client.py").write_text(
        textwrap.dedent(
            """
            import os

            from flwr.clientapp import ClientApp

            from tests.quickstart_app import client_app as quickstart

            app = ClientApp()


            @app.train()
            def train(msg, context):
                if msg.content["config"]["server-round"] >= 2:
                    os._exit(1)  # the worker process dies, as on a segfault or the OOM killer
                return quickstart.train(msg, context)


            @app.evaluate()
            def evaluate(msg, context):
                return quickstart.evaluate(msg, context)
            """
        )
    )
    return folder


def _one_error_of_a_dying_app(run_sim, tmp_path, *backend: str) -> str:
    """The dying app run on `backend`: exit 1, no traceback, the one `error:` line it printed."""
    app = _dying_app(tmp_path / "app")
    out = run_sim(
        f"workload.app.path={app}",
        "workload.app.accuracy_metric=eval_acc",
        "workload.app.loss_metric=eval_loss",
        "fleet.num_devices=4",
        "fleet.availability=1.0",
        "progress=false",
        *backend,
        "hydra.run.dir=out",
        timeout=400,
    )
    assert out.returncode == 1, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    errors = _errors(out.stderr)
    assert len(errors) == 1, out.stderr[-3000:]
    return errors[0]


def test_a_ray_worker_that_dies_ends_the_run_with_one_line_naming_the_back_end(run_sim, tmp_path) -> None:
    _require_ray()
    error = _one_error_of_a_dying_app(run_sim, tmp_path, "backend=ray", "ray.num_cpus=2")
    assert error.startswith("error: backend=ray failed: a Ray worker process died while running the ClientApp (")
    assert "ActorDiedError" in error
    assert (tmp_path / "out" / "__main__.log").exists()  # the run's folder stays, nothing removed


def test_a_worker_process_that_dies_ends_the_run_with_one_line_naming_the_back_end(run_sim, tmp_path) -> None:
    """`backend=processes`: the same one line, and no worker left behind."""
    error = _one_error_of_a_dying_app(run_sim, tmp_path, "backend=processes", "processes=2")
    assert error.startswith("error: backend=processes failed: a worker process died while running the ClientApp (pid ")
    assert error.endswith("exit status 1)")
    assert (tmp_path / "out" / "__main__.log").exists()


def test_ray_errors_become_backend_failures_and_a_calls_own_error_passes() -> None:
    _require_ray()
    import ray

    from sim.backends.base import BackendFailure
    from sim.backends.ray import _failures

    with pytest.raises(BackendFailure) as caught:
        with _failures("running the ClientApp"):
            raise ray.exceptions.WorkerCrashedError()
    assert str(caught.value).startswith(
        "backend=ray failed: a Ray worker process died while running the ClientApp (WorkerCrashedError: "
    )
    with pytest.raises(BackendFailure, match=r"^backend=ray failed: a Ray node \(its raylet\) died while x \("):
        with _failures("x"):
            raise ray.exceptions.LocalRayletDiedError()
    with pytest.raises(ValueError):
        with _failures("x"):
            raise ValueError("the call's own")

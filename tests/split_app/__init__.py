"""ServerApps for tests/e2e/test_split.py: one that tells which process runs the job (its pid and
whether Hydra, OmegaConf and PyYAML are imported there, into the run config's `result-json`), one that raises, one
that waits (for a file the test writes, or 60 s) so that the test can end a process mid-job."""

import json
import os
import sys
import time
from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

where_app = ServerApp()


@where_app.main()
def where(grid: Grid, context: Context) -> None:
    facts = {"pid": os.getpid(), **{name: name in sys.modules for name in ("hydra", "omegaconf", "yaml")}}
    Path(str(context.run_config["result-json"])).write_text(json.dumps(facts))


raising_app = ServerApp()


@raising_app.main()
def raising(grid: Grid, context: Context) -> None:
    raise ValueError("the server app's own bug")


waiting_app = ServerApp()


@waiting_app.main()
def waiting(grid: Grid, context: Context) -> None:
    started = Path(str(context.run_config["result-json"]))
    started.write_text(json.dumps({"pid": os.getpid()}))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not started.with_suffix(".go").exists():
        time.sleep(0.02)

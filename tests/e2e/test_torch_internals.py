"""The torch internals edgesim relies on (sim/torch_internals.py): torch's optimisers and dispatch
modes ask torch._dynamo for nothing but `disable(fn, recursive, wrapping=False)` and
`graph_break()` while nothing compiles, so the stand-in trains exactly as torch does without
importing the compiler; anything more brings the real one in whole. Each case runs in a fresh
interpreter: what is imported is the point, and this one's modules are not to be touched."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from ..conftest import REPO, TINY_OVERRIDES, sim_env

TRAIN = """
import hashlib, json, sys
import torch
from torch.utils.flop_counter import FlopCounterMode
{defer}
from sim.torch_internals import dynamo_deferred

torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.5, nesterov=True, weight_decay=5e-4)
x, y = torch.randn(16, 8), torch.randint(0, 3, (16,))
for _ in range(4):
    opt.zero_grad()
    with FlopCounterMode(display=False) as counter:  # a dispatch mode, as the work meter uses
        torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
opt.load_state_dict(opt.state_dict())
opt.step()
out = {{
    "weights": hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in model.parameters())).hexdigest(),
    "flops": counter.get_total_flops(),
    "deferred": dynamo_deferred(),
    "real_loaded": "torch._dynamo.convert_frame" in sys.modules,
}}
"""


def _run(code: str) -> dict:
    res = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code) + "\nprint(json.dumps(out))"],
        cwd=REPO,
        env=sim_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_an_optimiser_trains_the_same_without_importing_the_compiler() -> None:
    plain = _run(TRAIN.format(defer=""))
    deferred = _run(TRAIN.format(defer="from sim.torch_internals import defer_dynamo; defer_dynamo()"))
    assert plain["real_loaded"] and not plain["deferred"]  # torch itself imports the compiler here
    # a torch that asked torch._dynamo for anything else on this path would load the real one: caught here
    assert deferred["deferred"] and not deferred["real_loaded"]
    assert deferred["weights"] == plain["weights"] and deferred["flops"] == plain["flops"] > 0


def test_compiling_brings_in_the_whole_compiler_and_takes_back_what_the_stand_in_gave() -> None:
    out = _run(
        TRAIN.format(defer="from sim.torch_internals import defer_dynamo; defer_dynamo()")
        + """
before = out["deferred"]
compiled = torch.compile(lambda a: a.sin() + 1, backend="eager")
value = compiled(torch.zeros(2)).tolist()
import torch._dynamo
real = sys.modules["torch._dynamo"]
opt.zero_grad()  # asks the real module for its wrapper now
wrapped = torch.optim.Optimizer.zero_grad.__wrapped__
user = torch._dynamo.disable(lambda: 3)
defer_dynamo()  # the real one is in: nothing to do
out = {
    "before": before,
    "value": value,
    "real": type(real).__name__ == "module" and torch._dynamo is real and not dynamo_deferred(),
    "rewrapped": getattr(wrapped, "__dynamo_disable", wrapped) is not wrapped,
    "user_wrapped": user() == 3 and hasattr(user, "__wrapped__"),
    "still_real": sys.modules["torch._dynamo"] is real,
}
"""
    )
    assert out == {
        "before": True,
        "value": [1.0, 1.0],
        "real": True,
        "rewrapped": True,
        "user_wrapped": True,
        "still_real": True,
    }


def test_importing_a_submodule_imports_the_real_package_once() -> None:
    out = _run(
        """
import json, sys
import torch
from sim.torch_internals import defer_dynamo, dynamo_deferred
defer_dynamo()
from torch._dynamo import eval_frame
import torch._dynamo.utils as utils
out = {
    "deferred": dynamo_deferred(),
    "same": eval_frame is sys.modules["torch._dynamo.eval_frame"] is torch._dynamo.eval_frame,
    "utils": utils is sys.modules["torch._dynamo.utils"],
    "own_spec": type(eval_frame.__spec__.loader).__module__ != "sim.torch_internals",
}
"""
    )
    assert out == {"deferred": False, "same": True, "utils": True, "own_spec": True}


def test_a_run_with_worker_processes_trains_without_importing_the_compiler(tmp_path) -> None:
    """The job's process and its forked workers: Python's import log names no module of the compiler."""
    res = subprocess.run(
        [sys.executable, "-m", "sim", *TINY_OVERRIDES, "backend=processes", "plots=false", f"hydra.run.dir={tmp_path}"],
        cwd=REPO,
        env=dict(sim_env(), PYTHONPROFILEIMPORTTIME="1"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    imported = [line.rsplit("|", 1)[-1].strip() for line in res.stderr.splitlines() if line.startswith("import time:")]
    assert "sim.torch_internals" in imported and "torch.optim" in imported
    assert not [m for m in imported if m.startswith("torch._dynamo")]
    assert (tmp_path / "clients.csv").is_file()


def test_a_back_end_s_call_defers_the_compiler_in_whichever_process_runs_it() -> None:
    """`run_call` and `run_job` (every back end's, a Ray task's and actor's too) defer it
    themselves: a worker that never ran `sim.jobs.run` trains without importing the compiler."""
    out = _run(
        """
import json, sys
import torch
from sim.backends.base import run_call
from sim.torch_internals import dynamo_deferred

def train():
    w = torch.zeros(3, requires_grad=True)
    opt = torch.optim.SGD([w], lr=0.5)
    (w - 1).pow(2).sum().backward()
    opt.step()
    return w.tolist()

w = run_call(train, (), 0)
out = {"w": w, "deferred": dynamo_deferred(), "real_loaded": "torch._dynamo.convert_frame" in sys.modules}
"""
    )
    assert out == {"w": [1.0, 1.0, 1.0], "deferred": True, "real_loaded": False}


def test_code_that_walks_every_module_leaves_the_stand_in_alone() -> None:
    """`inspect.getmodule` asks each module in `sys.modules` for `__file__`, here in the middle of
    torch.distributed's import (which `torch.testing.assert_close` triggers): the stand-in says it
    has none rather than importing the compiler then (a circular import)."""
    out = _run(
        """
import inspect, json, sys
import torch
from sim.torch_internals import defer_dynamo, dynamo_deferred
defer_dynamo()
torch.testing.assert_close(torch.ones(2), torch.ones(2))
found = inspect.getmodule(json.dumps) is json
out = {"found": found, "has_file": hasattr(sys.modules["torch._dynamo"], "__file__"), "deferred": dynamo_deferred()}
"""
    )
    assert out == {"found": True, "has_file": False, "deferred": True}


def test_torchs_import_loads_the_gates_module_half_way() -> None:
    """`sim.split`'s gate opens at `IMPORT_MIDPOINT`: `import torch` itself must import it, after
    most of its burst of module loading and well before its end (by module count, which does not
    depend on the machine). A torch that moved it fails here: pick the module again."""
    out = _run(
        """
import json, sys
from sim.torch_internals import IMPORT_MIDPOINT
seen = []
class Recorder:
    def find_spec(self, name, path=None, target=None):
        seen.append((name, IMPORT_MIDPOINT in sys.modules))
sys.meta_path.insert(0, Recorder())
import torch
torch_modules = [n for n, _ in seen if n.startswith("torch")]
before = sum(1 for n, past in seen if n.startswith("torch") and not past)
out = {"imported": IMPORT_MIDPOINT in sys.modules, "fraction": before / len(torch_modules), "before": before}
"""
    )
    assert out["imported"]
    assert 0.4 <= out["fraction"] <= 0.8 and out["before"] >= 300, out

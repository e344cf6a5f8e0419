"""Execution back ends: the same job gives byte-identical CSVs on `local` and `ray`, in every
workload (the federated clients' `execute`; NoNN's, NAIR's and mcPipe's independent
computations through `map`).

The Ray tests start one local Ray instance (2 CPUs) for the module. Ray is a dependency of the
project: where it is missing or cannot start, they fail, saying why, rather than skip (a skipped
back end is an untested one)."""

from __future__ import annotations

import gc
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from sim.backends import Executor, LocalBackend, make_backend, torch_threads
from sim.config import Config, ConfigError
from sim.jobs import default_config, run

from ..conftest import TINY_OVERRIDES, finish, make_tiny_cfg, start_sim
from ..unit.test_mcpipe import _cfg as mcpipe_cfg
from .test_nair import _tiny_cfg as nair_cfg

# ray.init leaves the handles of the node processes it spawns (GCS, raylet, ...) and their
# /dev/null log files to the garbage collector while those processes run on; Python reports
# each as a ResourceWarning. They are Ray's, collected before this module ends (see the fixture).
pytestmark = [
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


def _csvs(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.csv"))}


def _require_ray() -> None:
    """Fail (not skip) where Ray is not installed: the Ray back end would go untested."""
    try:
        importlib.import_module("ray")
    except ImportError as exc:
        pytest.fail(
            f"Ray is not installed ({exc}): the Ray tests need it; install the project's dependencies", pytrace=False
        )


@pytest.fixture(scope="module")
def ray_up():
    """A local Ray instance with 2 CPUs for the whole module (each test's back end joins it);
    every test that uses it fails, saying why, where Ray is missing or cannot start."""
    _require_ray()
    from sim.backends.ray import RayBackend

    try:
        starter = RayBackend(num_cpus=2)
    except ConfigError as exc:
        problem = str(exc)
    else:
        problem = ""
    if problem:  # outside the except block: the message alone, not Ray's chained traceback
        pytest.fail(f"Ray cannot start a local instance on this machine: {problem}", pytrace=False)
    starter.stop_workers()  # its CPUs go to the tests' workers
    yield RayBackend
    starter.close()
    gc.collect()  # Ray's leftover handles go now, under this module's warning filters


@pytest.fixture(scope="module")
def ray_address(ray_up) -> str:
    from sim.backends.ray import cluster_address

    return cluster_address()


def test_torch_threads_are_set_and_restored() -> None:
    import torch

    before = torch.get_num_threads()
    other = 2 if before == 1 else 1
    with torch_threads(other):
        assert torch.get_num_threads() == other
    assert torch.get_num_threads() == before


def test_local_is_the_default_and_needs_no_ray() -> None:
    backend = make_backend(make_tiny_cfg())
    assert isinstance(backend, LocalBackend) and backend.torch_threads == 1


def _job_cfg(backend: str):
    cfg = make_tiny_cfg()
    cfg.seed = 3
    cfg.backend = backend
    cfg.compare = ["fedavg", "fedmax", "fedbuff", "fedasync"]  # synchronous rounds and push/pull
    cfg.channel.mode, cfg.channel.ber = "raw", 1e-5  # bit flips in the real arrays, too
    # and the network's effects: devices on and off, a shared cell, links that differ per device
    cfg.fleet.availability, cfg.fleet.online_s = 0.9, 30.0
    cfg.channel.medium, cfg.channel.links = "shared", "spread"
    cfg.fleet.num_devices = 8
    cfg.strategy.fraction_train = 0.5
    return cfg


def test_local_and_ray_give_byte_identical_csvs(ray_up, tmp_path) -> None:
    run(_job_cfg("local"), tmp_path / "local")
    run(_job_cfg("ray"), tmp_path / "ray")  # joins the module's Ray instance
    local, ray = _csvs(tmp_path / "local"), _csvs(tmp_path / "ray")
    assert len(local) == 17  # comparison + 4 strategies x (rounds, clients, summary, timeline)
    assert local.keys() == ray.keys()
    differ = [name for name in local if local[name] != ray[name]]
    assert not differ, f"CSVs differ between back ends: {differ}"


def _stateful_app() -> ClientApp:
    """Counts its calls in the node's context state; replies with the count and a seeded draw."""
    app = ClientApp()

    @app.train()
    def train(msg: Message, ctx: Context) -> Message:
        import torch

        calls = int(ctx.state["count"]["calls"]) + 1 if "count" in ctx.state else 1
        ctx.state["count"] = ConfigRecord({"calls": calls})
        draw = float(torch.rand(1))
        metrics = MetricRecord({"calls": calls, "draw": draw, "node": ctx.node_id})
        return Message(content=RecordDict({"metrics": metrics}), reply_to=msg)

    return app


def _jobs(contexts: dict[int, Context]) -> list:
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    jobs = []
    for node, ctx in contexts.items():
        msg = Message(RecordDict({"config": ConfigRecord({"server-round": 1})}), node, "train", group_id="1")
        msg.metadata.__dict__["_message_id"] = f"m{node}"
        jobs.append((msg, ctx, 1000 + node))
    return jobs


def test_ray_runs_jobs_in_order_with_their_seeds_and_keeps_context_state(ray_up) -> None:
    app = _stateful_app()
    outcomes = {}
    for name, make in (("local", lambda: LocalBackend(torch_threads=1)), ("ray", lambda: ray_up(torch_threads=1))):
        backend = make()
        contexts = {
            n: Context(run_id=1, node_id=n, node_config={}, state=RecordDict(), run_config={}) for n in range(1, 6)
        }
        rows = []
        for _ in range(2):  # twice: the second call sees the state the first one kept
            for ex in backend.execute(app, _jobs(contexts)):
                assert ex.error == "" and ex.reply is not None
                m = ex.reply.content["metrics"]
                rows.append((m["node"], m["calls"], m["draw"]))
        backend.close()
        outcomes[name] = rows
    assert [(n, c) for n, c, _ in outcomes["ray"]] == [(n, c) for r in (1, 2) for n in range(1, 6) for c in [r]]
    assert outcomes["ray"] == outcomes["local"]
    assert len({d for _, _, d in outcomes["ray"][:5]}) == 5  # each job its own seed
    assert np.isfinite([d for _, _, d in outcomes["ray"]]).all()


def test_actors_are_not_killed_while_ray_creates_them(ray_up, monkeypatch) -> None:
    """`stop_workers` right after the back end is made (the module's fixture does so) waits
    until its actors have started: Ray can lose the CPU of an actor killed while its worker is
    being leased, and the next back end's actors then wait for it forever (seen in CI)."""
    import ray

    import sim.backends.ray as ray_backend

    started_when_killed = []
    real_kill = ray.kill

    def kill(actor, **kw):
        ready = [ref for w, ref in zip(backend._workers, starting) if w is actor]
        started_when_killed.append(bool(ray.wait(ready, timeout=0)[0]))
        real_kill(actor, **kw)

    backend = ray_up(torch_threads=1)
    starting = list(backend._starting)
    monkeypatch.setattr(ray_backend.ray, "kill", kill)
    backend.stop_workers()
    monkeypatch.undo()
    assert started_when_killed == [True] * len(starting) and len(starting) == 2
    again = ray_up(torch_threads=1)  # both CPUs free again: its actors start
    try:
        assert len(again._started_workers()) == 2
    finally:
        again.close()


def test_workers_that_cannot_be_placed_are_a_backend_failure_not_a_wait(ray_up, monkeypatch) -> None:
    import ray

    import sim.backends.ray as ray_backend
    from sim.backends import BackendFailure

    holder = ray_up(torch_threads=1)
    holder._started_workers()  # its two actors hold the instance's two CPUs
    monkeypatch.setattr(ray_backend, "START_TIMEOUT_S", 2.0)
    blocked = ray_up(torch_threads=1)
    starting = list(blocked._starting)
    context = Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={})
    try:
        with pytest.raises(BackendFailure) as caught:
            blocked.execute(_stateful_app(), _jobs({1: context}))
        assert str(caught.value) == (
            "backend=ray failed: 2 of its 2 workers could not start within 2 s "
            "(each needs 1 CPU; the cluster has 0 of 2 free)"
        )
    finally:
        blocked.close()
        ray.wait(starting, num_returns=len(starting), timeout=30)  # dead, their leases cancelled ...
        holder.close()  # ... before the CPUs they waited for come free


def test_a_sweep_on_the_ray_launcher_gives_the_sequential_comparison(ray_address, tmp_path) -> None:
    """`hydra/launcher=edgesim_ray` (joining the module's Ray) against Hydra's basic launcher."""
    args = [*TINY_OVERRIDES, "channel.ber=0,1e-4", "seed=1,2"]
    ray_run = start_sim(
        [
            "-m",
            *args,
            "hydra/launcher=edgesim_ray",
            f"hydra.launcher.address={ray_address}",
            f"hydra.sweep.dir={tmp_path / 'ray'}",
        ],
        tmp_path,
    )
    seq = finish(start_sim(["-m", *args, f"hydra.sweep.dir={tmp_path / 'seq'}"], tmp_path))
    ray_done = finish(ray_run)
    assert seq.returncode == 0, seq.stderr[-2000:]
    assert ray_done.returncode == 0, ray_done.stderr[-2000:]
    assert "Launching 4 jobs on Ray" in ray_done.stderr + ray_done.stdout
    seq_csvs, ray_csvs = _csvs(tmp_path / "seq"), _csvs(tmp_path / "ray")
    assert "comparison.csv" in seq_csvs and len(seq_csvs) == 1 + 4 * 4  # 4 jobs x (rounds, clients, summary, timeline)
    assert seq_csvs.keys() == ray_csvs.keys()
    assert [k for k in seq_csvs if seq_csvs[k] != ray_csvs[k]] == []


def test_ray_is_imported_by_one_module_only() -> None:
    """Frameworks at the edges: in the project's packages, `import ray` appears in
    sim/backends/ray.py alone, and a local job never loads it. (benchmarks/vs_flower.py times
    Flower's own use of Ray; it is a measurement script, not part of the project.)"""
    import ast
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    importers = []
    packages = ("sim", "experiments", "devices", "channels", "strategies", "hydra_plugins")
    for path in sorted(p for pkg in packages for p in (root / pkg).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            if any(n == "ray" or n.startswith("ray.") for n in names):
                importers.append(str(path.relative_to(root)))
    assert sorted(set(importers)) == ["sim/backends/ray.py"]
    code = "import sys, sim.federated.job, sim.backends; assert 'ray' not in sys.modules, 'ray loaded'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)


def test_a_cluster_address_nothing_answers_at_is_a_one_line_error(run_sim) -> None:
    _require_ray()
    out = run_sim(*TINY_OVERRIDES, "backend=ray", "ray.address=127.0.0.1:1", "hydra.run.dir=out", timeout=120)
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.strip().splitlines()[-1].startswith("error: ray.address='127.0.0.1:1': no Ray cluster answers")
    assert "Traceback" not in out.stderr


# --- map: the independent computations of NoNN, NAIR and mcPipe ---------------------------------
def _draw(scale: float, shared: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    """A call for `map`: a draw from torch's global generator, the thread count, the process."""
    return scale * torch.rand(3) + shared, torch.get_num_threads(), os.getpid()


def _fail(i: int) -> int:
    if i == 2:
        raise ValueError(f"call {i} failed")
    return i


def _expected(calls, seeds) -> list[torch.Tensor]:
    out = []
    for (scale, shared), seed in zip(calls, seeds):
        torch.manual_seed(seed)
        out.append(scale * torch.rand(3) + shared)
    return out


def test_map_runs_the_calls_in_order_under_their_own_seeds(ray_up) -> None:
    """On the local back end, and as Ray tasks (a NoNN, NAIR or mcPipe job's executor): the
    same results, in order, each call under its seed and torch thread count."""
    shared = torch.arange(3.0)
    calls = [(float(i), shared) for i in range(6)]
    seeds = [10, 11, 12, 10, 13, 14]
    with torch.random.fork_rng(devices=[]):
        want = _expected(calls, seeds)
        default = _expected(calls[:2], [0, 0])  # no seeds: 0 for every call
    before = torch.random.get_rng_state()
    runs = {"local": LocalBackend(torch_threads=1).map(_draw, calls, seeds)}
    assert torch.equal(torch.random.get_rng_state(), before)  # the caller's generator untouched
    backend = ray_up(torch_threads=1, actors=False)  # joins the module's Ray: 2 CPUs, 2 calls at a time
    try:
        runs["ray"] = backend.map(_draw, calls, seeds)
        runs["ray, no seeds"] = backend.map(_draw, calls[:2])
        with pytest.raises(ValueError, match="call 2 failed"):  # the call's own exception, as locally
            backend.map(_fail, [(i,) for i in range(4)])
        assert backend.map(_fail, []) == []
    finally:
        backend.close()
    for name, got in runs.items():
        expected = default if name.endswith("no seeds") else want
        assert len(got) == len(expected) and all(torch.equal(a, b) for (a, _, _), b in zip(got, expected)), name
        assert {threads for _, threads, _ in got} == {1}, name
    assert {pid for _, _, pid in runs["local"]} == {os.getpid()}
    assert os.getpid() not in {pid for _, _, pid in runs["ray"]}  # on Ray's workers


def test_executor_builds_its_back_end_at_the_first_call_with_work() -> None:
    cfg = default_config()
    with Executor(cfg) as ex:
        assert ex.map(_fail, []) == [] and ex.backend is None
        assert ex.map(_fail, [(0,), (1,)]) == [0, 1] and isinstance(ex.backend, LocalBackend)
    assert ex.backend is None


def _nonn_cfg() -> Config:
    cfg = default_config("nonn")
    cfg.progress = False
    n = cfg.workload
    n.teacher_depth, n.teacher_width, n.teacher_epochs, n.student_depth, n.student_epochs = 10, 0.5, 1, 10, 1
    n.num_students, n.timing_images, n.calibrate = 2, 2, False
    n.memory_budget_bytes, n.flop_budget, n.top_filters, n.edge_percentile = 20000, 1e6, 8, 80
    n.beta_search, n.at_beta_search = [10.0, 100.0], [10.0]  # 5 students: 2 NoNN, KD-only NoNN, KD, ATKD
    return cfg


def _mcpipe_cfg() -> Config:
    cfg = mcpipe_cfg(workers=[2, 3])  # 9 runs: local once, 4 schedules x 2 sizes
    cfg.channel.mode, cfg.channel.ber = "raw", 1e-5  # bit flips in the real payloads, too
    return cfg


def _dream_cfg() -> Config:
    cfg = default_config("dream")
    cfg.progress, cfg.plots = False, False
    d = cfg.workload
    d.teacher_width, d.teacher_epochs = 1.0, 1
    d.images, d.steps, d.student_epochs, d.student_widths = 40, 3, 1, [0.25, 0.5]  # 8 students, in parallel
    return cfg


# CSVs each writes, timeline files included (NoNN one; NAIR one per method; mcPipe one per run)
WORKLOADS = {"nonn": (_nonn_cfg, 9), "nair": (nair_cfg, 16), "mcpipe": (_mcpipe_cfg, 15), "dream": (_dream_cfg, 5)}


def _run(make, backend: str, out, cache) -> dict:
    cfg = make()
    cfg.backend, cfg.cache_dir = backend, str(cache)
    run(cfg, out)
    return json.loads((out / "wallclock.json").read_text())


@pytest.mark.parametrize("workload", list(WORKLOADS))
def test_workload_writes_byte_identical_csvs_on_local_and_ray(workload, ray_up, tmp_path) -> None:
    make, files = WORKLOADS[workload]
    # each from an empty model cache: every model trained on its own back end
    _run(make, "local", tmp_path / "local", tmp_path / "cache-local")
    wall = _run(make, "ray", tmp_path / "ray", tmp_path / "cache-ray")
    assert wall["backend"] == "ray" and wall["backend_start_s"] > 0
    local, ray = _csvs(tmp_path / "local"), _csvs(tmp_path / "ray")
    assert len(local) == files and local.keys() == ray.keys()
    assert [name for name in local if local[name] != ray[name]] == []
    if workload == "nonn":  # every model cached: Ray never starts, the same CSVs
        wall = _run(make, "ray", tmp_path / "cached", tmp_path / "cache-ray")
        assert wall["backend_start_s"] == 0
        cached = _csvs(tmp_path / "cached")
        assert [name for name in local if local[name] != cached[name]] == []


def test_a_dead_cluster_address_stops_a_workload_before_it_writes(tmp_path) -> None:
    """NoNN, NAIR and mcPipe start their back end at the first call with work: a cluster address
    nothing answers at is then the same one-line error, and no CSV is left behind. (In a fresh
    process: this module's own Ray instance would otherwise be joined instead.)"""
    _require_ray()
    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "out"
    code = (
        "import sys; from tests.unit.test_mcpipe import _cfg; from sim.config import ConfigError; "
        "from sim.jobs import run\ncfg = _cfg(workers=[2]); cfg.backend, cfg.ray.address = 'ray', '127.0.0.1:1'\n"
        f"try:\n    run(cfg, {str(out)!r})\nexcept ConfigError as exc:\n    print(exc); sys.exit(2)"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1].startswith("ray.address='127.0.0.1:1': no Ray cluster answers")
    assert not out.exists() or not list(out.rglob("*.csv"))

"""Execution back ends: the same job gives byte-identical CSVs on `local` and `ray`.

The Ray tests start one local Ray instance (2 CPUs) for the module and skip, saying why, only
when Ray cannot start on the machine."""
from __future__ import annotations

import gc

import numpy as np
import pytest
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from sim.backends import LocalBackend, make_backend, torch_threads
from sim.config import ConfigError
from sim.runner import run

from .conftest import TINY_OVERRIDES, finish, make_tiny_cfg, start_sim

# ray.init leaves the handles of the node processes it spawns (GCS, raylet, ...) and their
# /dev/null log files to the garbage collector while those processes run on; Python reports
# each as a ResourceWarning. They are Ray's, collected before this module ends (see the fixture).
pytestmark = [
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


def _csvs(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.csv"))}


@pytest.fixture(scope="module")
def ray_up():
    """A local Ray instance with 2 CPUs for the whole module (each test's back end joins it)."""
    try:
        from sim.ray_backend import RayBackend
    except ImportError as exc:
        pytest.skip(f"Ray is not installed: {exc}")
    try:
        starter = RayBackend(num_cpus=2)
    except ConfigError as exc:
        pytest.skip(f"Ray cannot start on this machine: {exc}")
    starter.stop_workers()  # its CPUs go to the tests' workers
    yield RayBackend
    starter.close()


@pytest.fixture(scope="module")
def ray_address(ray_up) -> str:
    from sim.ray_backend import cluster_address

    return cluster_address()
    gc.collect()  # Ray's leftover handles go now, under this module's warning filters


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
    cfg.compare = ["fedavg", "fedmax"]
    cfg.channel.mode, cfg.channel.ber = "raw", 1e-5  # bit flips in the real arrays, too
    cfg.fleet.num_devices = 8
    cfg.strategy.fraction_train = 0.5
    return cfg


def test_local_and_ray_give_byte_identical_csvs(ray_up, tmp_path) -> None:
    run(_job_cfg("local"), tmp_path / "local")
    run(_job_cfg("ray"), tmp_path / "ray")  # joins the module's Ray instance
    local, ray = _csvs(tmp_path / "local"), _csvs(tmp_path / "ray")
    assert len(local) == 7  # comparison + 2 strategies x (rounds, clients, summary)
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
        contexts = {n: Context(run_id=1, node_id=n, node_config={}, state=RecordDict(), run_config={}) for n in range(1, 6)}
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


def test_a_sweep_on_the_ray_launcher_gives_the_sequential_comparison(ray_address, tmp_path) -> None:
    """`hydra/launcher=edgesim_ray` (joining the module's Ray) against Hydra's basic launcher."""
    args = [*TINY_OVERRIDES, "channel.ber=0,1e-4", "seed=1,2"]
    ray_run = start_sim(["-m", *args, "hydra/launcher=edgesim_ray", f"hydra.launcher.address={ray_address}",
                         f"hydra.sweep.dir={tmp_path / 'ray'}"], tmp_path)
    seq = finish(start_sim(["-m", *args, f"hydra.sweep.dir={tmp_path / 'seq'}"], tmp_path))
    ray_done = finish(ray_run)
    assert seq.returncode == 0, seq.stderr[-2000:]
    assert ray_done.returncode == 0, ray_done.stderr[-2000:]
    assert "Launching 4 jobs on Ray" in ray_done.stderr + ray_done.stdout
    seq_csvs, ray_csvs = _csvs(tmp_path / "seq"), _csvs(tmp_path / "ray")
    assert "comparison.csv" in seq_csvs and len(seq_csvs) == 1 + 4 * 3
    assert seq_csvs.keys() == ray_csvs.keys()
    assert [k for k in seq_csvs if seq_csvs[k] != ray_csvs[k]] == []


def test_ray_is_imported_by_one_module_only() -> None:
    """Frameworks at the edges: in the project's packages, `import ray` appears in
    sim/ray_backend.py alone, and a local job never loads it. (benchmarks/vs_flower.py times
    Flower's own use of Ray; it is a measurement script, not part of the project.)"""
    import ast
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
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
    assert sorted(set(importers)) == ["sim/ray_backend.py"]
    code = "import sys, sim.runner, sim.backends; assert 'ray' not in sys.modules, 'ray loaded'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)


def test_a_cluster_address_nothing_answers_at_is_a_one_line_error(run_sim) -> None:
    pytest.importorskip("ray")
    out = run_sim(*TINY_OVERRIDES, "backend=ray", "ray.address=127.0.0.1:1", "hydra.run.dir=out", timeout=120)
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.strip().splitlines()[-1].startswith("error: ray.address='127.0.0.1:1': no Ray cluster answers")
    assert "Traceback" not in out.stderr

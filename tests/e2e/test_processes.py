"""`backend=processes`: a step's computations on worker processes forked from the job's process
give the same results as `backend=local`, byte for byte (the federated clients' `execute`, with
stragglers, a user's Flower app, and the independent computations of NoNN, NAIR, mcPipe and DREAM through
`map`); a worker that dies is one `BackendFailure` line; no worker outlives its back end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from sim.backends import BackendFailure, LocalBackend, make_backend, processes
from sim.backends.processes import ProcessBackend, free_cores
from sim.config import ConfigError
from sim.jobs import run

from ..conftest import make_tiny_cfg
from .test_backends import WORKLOADS, _csvs, _draw, _expected, _fail, _job_cfg, _jobs, _run, _stateful_app
from .test_quickstart_app import _quickstart_cfg, _run_config


def _running(pid: int) -> bool:
    """`pid` is a process that has not ended (a zombie, ended but not yet reaped, has)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _gone(pids: list[int]) -> bool:
    """None of `pids` is a running process."""
    return not any(_running(pid) for pid in pids)


def _die(i: int) -> int:
    if i == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return i


def test_make_backend_builds_it_with_its_worker_count(monkeypatch) -> None:
    cfg = make_tiny_cfg()
    cfg.backend, cfg.processes = "processes", 3
    backend = make_backend(cfg)
    assert isinstance(backend, ProcessBackend) and backend.num_workers == 3 and backend.torch_threads == 1
    assert backend.pids == []  # forked at the first step, not before
    cfg.processes = None
    assert free_cores()[0] >= 1
    monkeypatch.setattr(processes, "free_cores", lambda since=None: (5, "made up"))  # a fixed answer: the load moves
    assert make_backend(cfg).num_workers == 5
    cfg.torch_threads = 2  # a forked worker on more threads would hang in OpenMP: refused
    with pytest.raises(ConfigError, match=r"^torch_threads=2: backend=processes needs 1 "):
        make_backend(cfg)


def test_map_and_execute_on_workers_as_on_the_local_back_end() -> None:
    shared = torch.arange(3.0)
    calls = [(float(i), shared) for i in range(6)]
    seeds = [10, 11, 12, 10, 13, 14]
    with torch.random.fork_rng(devices=[]):
        want = _expected(calls, seeds)
    before = torch.random.get_rng_state()
    backend = ProcessBackend(torch_threads=1, workers=2)
    try:
        got = backend.map(_draw, calls, seeds)
        assert torch.equal(torch.random.get_rng_state(), before)  # the caller's generator untouched
        assert all(torch.equal(a, b) for (a, _, _), b in zip(got, want))
        assert {threads for _, threads, _ in got} == {1}
        pids = {pid for _, _, pid in got}
        assert os.getpid() not in pids and pids <= set(backend.pids)
        with pytest.raises(ValueError, match="call 2 failed"):  # the call's own exception, as locally
            backend.map(_fail, [(i,) for i in range(5)])
        assert backend.map(_fail, [(0,), (1,)]) == [0, 1]  # the same workers, still in step
        assert backend.map(_fail, []) == []
        # a ClientApp that keeps state in its contexts: the state comes back, job by job
        app = _stateful_app()
        outcomes = {}
        for name, b in (("local", LocalBackend(torch_threads=1)), ("processes", backend)):
            contexts = {
                n: Context(run_id=1, node_id=n, node_config={}, state=RecordDict(), run_config={}) for n in range(1, 6)
            }
            rows = []
            for _ in range(2):  # twice: the second call sees the state the first one kept
                for ex in b.execute(app, _jobs(contexts)):
                    assert ex.error == "" and ex.reply is not None
                    m = ex.reply.content["metrics"]
                    rows.append((m["node"], m["calls"], m["draw"], ex.flops, ex.peak_bytes))
            outcomes[name] = rows
        assert [(n, c) for n, c, *_ in outcomes["processes"]] == [(n, r) for r in (1, 2) for n in range(1, 6)]
        assert outcomes["processes"] == outcomes["local"]
        pids = backend.pids
        assert len(pids) == 2
    finally:
        backend.close()
    assert backend.pids == [] and _gone(pids)


def _waiting_app(flag: Path, last: int) -> ClientApp:
    """Node `last` waits (up to 10 s) for `flag` to exist and replies whether it saw it; the others reply at once."""
    app = ClientApp()

    @app.train()
    def train(msg: Message, ctx: Context) -> Message:
        saw = ctx.node_id != last
        for _ in range(1000):
            if saw or flag.exists():
                saw = True
                break
            time.sleep(0.01)
        ctx.state["seen"] = ConfigRecord({"node": ctx.node_id})
        return Message(content=RecordDict({"metrics": MetricRecord({"saw": int(saw)})}), reply_to=msg)

    return app


def test_execute_tells_each_job_in_order_while_the_later_ones_run(tmp_path) -> None:
    """`done` hears of each job in job order, with its context state in place, while the jobs
    after it still run: the last job waits for a file that `done` makes on hearing of the first
    (one after the other, it would wait in vain). An exception from `done` ends the step and
    the pool; the next step forks a fresh one and runs as before."""
    flag = tmp_path / "first-job-told"
    contexts = {n: Context(run_id=1, node_id=n, node_config={}, state=RecordDict(), run_config={}) for n in range(1, 9)}
    jobs = _jobs(contexts)
    heard = []

    def done(index: int, ex) -> None:
        heard.append((index, ex, int(jobs[index][1].state["seen"]["node"])))
        flag.touch()

    backend = ProcessBackend(torch_threads=1, workers=2)
    try:
        runs = backend.execute(_waiting_app(flag, last=8), jobs, done)
        assert [i for i, _, _ in heard] == list(range(8))
        assert [ex for _, ex, _ in heard] == runs and [n for _, _, n in heard] == list(range(1, 9))
        assert [int(ex.reply.content["metrics"]["saw"]) for ex in runs] == [1] * 8  # the last job saw the file

        def fails(index: int, ex) -> None:
            if index == 2:
                raise KeyError("a caller's own error")

        pids = backend.pids
        with pytest.raises(KeyError, match="a caller's own error"):
            backend.execute(_waiting_app(flag, last=8), _jobs(contexts), fails)
        assert backend.pids == [] and _gone(pids)
        again = backend.execute(_waiting_app(flag, last=8), _jobs(contexts))
        assert [int(ex.reply.content["metrics"]["saw"]) for ex in again] == [1] * 8
    finally:
        backend.close()


def test_the_local_back_end_tells_each_job_in_order_once_the_step_is_over() -> None:
    """A back end that finishes a step at once (local; vectorized and Ray likewise, through
    `sim.backends.base.report`) tells `done` of every job, in order, with the runs it returns."""
    contexts = {n: Context(run_id=1, node_id=n, node_config={}, state=RecordDict(), run_config={}) for n in range(1, 6)}
    heard = []
    runs = LocalBackend(torch_threads=1).execute(_stateful_app(), _jobs(contexts), lambda i, ex: heard.append((i, ex)))
    assert heard == list(enumerate(runs))


def _unpicklable(i: int):
    return (lambda: i) if i == 30 else i  # a lambda does not pickle


def test_many_calls_go_in_batches_and_come_back_in_order() -> None:
    """Past a few calls a worker takes several at once (`_batch_size`): the results are still in
    call order, each under its seed; a failing call's exception, or a result that does not
    pickle, is raised as with one call a message, and the workers stay in step."""
    sizes, left = [], 100
    while left:
        sizes.append(processes._batch_size(left, 2))
        left -= sizes[-1]
    assert sizes[0] == 12 and sizes[-1] == 1 and sizes == sorted(sizes, reverse=True) and len(sizes) < 50
    shared = torch.arange(3.0)
    calls = [(float(i), shared) for i in range(100)]
    seeds = [1000 + i % 7 for i in range(100)]
    with torch.random.fork_rng(devices=[]):
        want = _expected(calls, seeds)
    backend = ProcessBackend(torch_threads=1, workers=2)
    try:
        got = backend.map(_draw, calls, seeds)
        assert all(torch.equal(a, b) for (a, _, _), b in zip(got, want))
        assert len({pid for _, _, pid in got}) == 2  # both workers took part
        with pytest.raises(ValueError, match="call 2 failed"):
            backend.map(_fail, [(i,) for i in range(60)])
        with pytest.raises(Exception, match="pickle"):
            backend.map(_unpicklable, [(i,) for i in range(60)])
        assert backend.map(_fail, [(i,) for i in range(3, 63)]) == list(range(3, 63))
    finally:
        backend.close()


def _collector_state() -> tuple[bool, int]:
    import gc

    return gc.isenabled(), gc.get_freeze_count()


def test_workers_freeze_what_they_were_forked_with_and_the_job_does_not() -> None:
    """A worker's collections skip the heap it shares with the job's process (`gc.freeze` in the
    worker: they would write to its pages and copy them); the job's own heap is left as it was."""
    import gc

    backend = ProcessBackend(torch_threads=1, workers=2)
    try:
        states = backend.map(_collector_state, [()] * 4)
    finally:
        backend.close()
    assert all(enabled and frozen > 1000 for enabled, frozen in states)
    assert gc.get_freeze_count() == 0


def test_a_worker_that_dies_is_a_backend_failure_and_no_worker_is_left() -> None:
    backend = ProcessBackend(torch_threads=1, workers=2)
    try:
        assert backend.map(_die, [(0,)]) == [0]
        pids = backend.pids
        with pytest.raises(BackendFailure) as info:
            backend.map(_die, [(i,) for i in range(4)])
        text = str(info.value)
        assert "\n" not in text
        assert text.startswith("backend=processes failed: a worker process died while running the job's computations")
        assert "killed by SIGKILL" in text
        assert backend.pids == [] and _gone(pids)  # the other worker stopped, too
        assert backend.map(_die, [(0,), (2,)]) == [0, 2]  # the next step forks a fresh pool
    finally:
        pids = backend.pids
        backend.close()
    assert _gone(pids)


def test_workers_end_on_their_own_when_the_jobs_process_is_killed() -> None:
    """SIGKILL leaves the job's process no chance to stop its workers: they notice and end."""
    code = (
        "import os, signal; from sim.backends.processes import ProcessBackend\n"
        "from tests.e2e.test_processes import _die\n"
        "b = ProcessBackend(torch_threads=1, workers=2); assert b.map(_die, [(0,), (2,)]) == [0, 2]\n"
        "print(*b.pids, flush=True); os.kill(os.getpid(), signal.SIGKILL)"
    )
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    pids = [int(p) for p in proc.stdout.split()]
    assert len(pids) == 2
    deadline = time.monotonic() + 30
    while not _gone(pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _gone(pids)


def _same_csvs(make, tmp_path, files: int | None = None) -> None:
    local_cfg, proc_cfg = make(), make()
    proc_cfg.backend, proc_cfg.processes = "processes", 2
    run(local_cfg, tmp_path / "local")
    run(proc_cfg, tmp_path / "processes")
    local, proc = _csvs(tmp_path / "local"), _csvs(tmp_path / "processes")
    if files is not None:
        assert len(local) == files
    assert local.keys() == proc.keys()
    assert [name for name in local if local[name] != proc[name]] == []


def test_federated_job_gives_byte_identical_csvs(tmp_path) -> None:
    """Synchronous rounds and push/pull, devices on and off, bit flips in the real arrays."""
    _same_csvs(lambda: _job_cfg("local"), tmp_path, files=17)


def test_federated_job_with_stragglers_gives_byte_identical_csvs(tmp_path) -> None:
    def make():
        cfg = _job_cfg("local")
        cfg.compare, cfg.strategy.timeout_s = ["fedavg", "fedmax"], 1.0  # some clients miss the deadline
        return cfg

    _same_csvs(make, tmp_path)
    statuses = (tmp_path / "processes" / "fedavg" / "clients.csv").read_text()
    assert "straggler" in statuses and "received" in statuses


def test_a_users_flower_app_gives_byte_identical_csvs(tmp_path) -> None:
    _same_csvs(lambda: _quickstart_cfg(make_tiny_cfg, _run_config()), tmp_path)


@pytest.mark.parametrize("workload", ["mcpipe", "nair", "nonn", "dream"])
def test_map_workload_gives_byte_identical_csvs(workload, tmp_path) -> None:
    """The independent trainings and simulated runs, each from an empty model cache."""
    make, files = WORKLOADS[workload]

    def two_workers():
        cfg = make()
        cfg.processes = 2
        return cfg

    _run(make, "local", tmp_path / "local", tmp_path / "cache-local")
    wall = _run(two_workers, "processes", tmp_path / "processes", tmp_path / "cache-processes")
    assert wall["backend"] == "processes" and len(wall["maps"]) >= 1
    local, proc = _csvs(tmp_path / "local"), _csvs(tmp_path / "processes")
    assert len(local) == files and local.keys() == proc.keys()
    assert [name for name in local if local[name] != proc[name]] == []


def test_a_worker_count_it_chose_is_said_once(monkeypatch, capsys) -> None:
    monkeypatch.setattr(processes, "free_cores", lambda since=None: (2, "2 cores, load 1.10 of which this run 0.95"))
    backend = ProcessBackend(torch_threads=1)
    try:
        assert backend.map(_die, [(0,), (2,)]) == [0, 2]
        assert backend.map(_die, [(3,)]) == [3]
    finally:
        backend.close()
    said = [line for line in capsys.readouterr().out.splitlines() if line.startswith("backend=processes")]
    assert said == [
        "backend=processes: 2 worker processes (the cores free: 2 cores, load 1.10 of which this run 0.95; "
        "processes=N sets it)"
    ]

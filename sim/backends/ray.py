"""The Ray execution back end (`backend=ray`): the sampled clients' ClientApp computations of a
step (`execute`), or any workload's independent computations (`map`), run in parallel on Ray
workers. The only module of the project that imports Ray.

A pool of actors, one CPU each, holds the ClientApp (shipped once per app through Ray's
object store) and its process's FLOP cache (`sim.meter.PROCESS_COSTS`; the counts are deterministic, so every worker
finds the same figures). A step's jobs are dealt round-robin to the actors; each job runs
exactly as on the local back end (`sim.backends.run_job`: its own torch seed, the same
number of torch threads, the same meter), so the replies, FLOPs and memory figures, and
hence every CSV, are byte-identical to `backend=local`. A ClientApp that keeps state in its
`Context` gets the state back: the worker returns it with the reply.

`map(fn, calls, seeds)` (the NoNN, NAIR and mcPipe jobs, on a back end built without actors by
`sim.backends.make_executor`) runs each call as a Ray task of 1 CPU, `ray.num_workers` (default:
the cluster's CPUs) at a time, the next as soon as one ends, so calls of unequal length keep
every CPU busy. A task runs `sim.backends.run_call` (its own torch seed, the same torch threads)
on Ray's pool of worker processes, which keep their imports from one call to the next; the
results come back in the order of `calls`. An argument object that several calls share (a data
set, a teacher's outputs, a model's shared pieces) is put in Ray's object store once, not
shipped once per call.

`ray.address` joins an existing cluster (`auto`, `HOST:PORT` or `ray://HOST:10001`); left
null, a local Ray instance is started with `ray.num_cpus` CPUs and shut down after the job.
Workers import the project from this checkout's folder (PYTHONPATH): on a cluster, every node
needs the same edgesim code at the same path, or installed as a package.

A Ray process that dies under a step (a worker: killed, out of memory, or a ClientApp that ends
its process; a raylet or a node), or a result Ray loses, is a `BackendFailure` naming what died:
the run ends with that one line (`sim/__main__.py`), not with Ray's traceback. A ClientApp's
exception stays its error reply, and a `map` call's exception is raised as it is.

The actors are never killed while Ray is still creating them (`stop_workers` waits for them to
start): Ray can lose the CPU of an actor killed in the millisecond its worker is leased (the GCS
logs "Ignoring granted lease for canceled lease request" and the lease is never returned; seen
here with Ray 2.55, ray-project/ray#17369), and the next actors then wait for that CPU forever.
Actors that cannot be placed at all (a cluster whose CPUs other jobs hold) are a `BackendFailure`
after `START_TIMEOUT_S`, saying how many CPUs are free, not a silent wait.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

# Ray >= 2.5x warns (FutureWarning) that it will stop overriding CUDA_VISIBLE_DEVICES for
# zero-GPU tasks; opting in to that behaviour now silences it. Set before Ray is imported.
os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")

import ray
import torch
from flwr.app import Context, Message

from experiments.federated.internals import set_task_identity, task_identity
from sim.backends.base import BackendFailure, Done, Execution, call_seeds, report, run_call, run_job, torch_threads
from sim.config import ConfigError
from sim.meter import PROCESS_COSTS

__all__ = ["RayBackend", "cluster_address", "run_parallel", "start_ray", "stop_ray"]

ROOT = Path(__file__).resolve().parent.parent.parent
SWEEP_JOB_ENV = "EDGESIM_RAY_SWEEP_JOB"  # set in the Ray tasks that run a sweep's jobs
_APPS_KEPT = 2  # ClientApps a worker keeps deserialised (the runner's strategies run one after another)
START_TIMEOUT_S = 300.0  # how long the actors may take to be placed and started (~3 s here: torch's import)
STOP_WAIT_S = 60.0  # how long `stop_workers` waits for actors still starting before it kills them anyway


def _reachable(address: str) -> None:
    """Fail fast on a cluster address nothing answers at (Ray itself retries for minutes)."""
    if address == "auto":
        return  # Ray reads the address `ray start` left on this machine, and says if there is none
    hostport = address.split("://", 1)[1] if "://" in address else address
    host, _, port = hostport.rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"ray.address={address!r}: no Ray cluster answers there ({exc}); "
            "give 'auto', 'HOST:PORT' or 'ray://HOST:PORT' of a running cluster, or null"
        ) from None


@contextlib.contextmanager
def _environment(env: dict) -> Iterator[None]:
    """`env` in this process's environment inside (what the processes it starts inherit), as before after."""
    before = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def start_ray(address: str | None, num_cpus: int | None) -> bool:
    """Join the cluster at `address`, or start a local instance with `num_cpus` CPUs (all when
    None), unless Ray is up already; True when this call started or joined it."""
    if ray.is_initialized():
        return False
    env = {
        "FLWR_TELEMETRY_ENABLED": os.environ.get("FLWR_TELEMETRY_ENABLED", "0"),
        "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",
        "PYTHONHASHSEED": os.environ.get("PYTHONHASHSEED", "0"),
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
    }
    kwargs: dict = {"log_to_driver": False, "configure_logging": False}
    if address:
        _reachable(address)
        kwargs.update(address=address, runtime_env={"env_vars": env})
    else:
        # A local instance's processes inherit this process's environment, so the workers get
        # `env` without a runtime environment: a job-level `runtime_env` makes Ray start fresh
        # workers for it (the ones it prestarts at init go unused) and costs ~3 s of start-up.
        kwargs.update(num_cpus=num_cpus, include_dashboard=False)
    try:
        with _environment(env if not address else {}):
            ray.init(**kwargs)
    except Exception as exc:  # Ray raises many kinds; all mean the same here
        where = f"ray.address={address!r}: cannot join the cluster" if address else "backend=ray: cannot start Ray"
        raise ConfigError(f"{where} ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    return True


def cluster_address() -> str:
    """The address of the Ray cluster this process is connected to (for `ray.address`)."""
    return ray.get_runtime_context().gcs_address


def stop_ray() -> None:
    if ray.is_initialized():
        ray.shutdown()


def run_parallel(fn, calls: list[tuple], num_cpus: float = 1.0) -> list:
    """`[fn(*args) for args in calls]`, each call a Ray task with `num_cpus` CPUs, in parallel;
    results in the order of `calls`. (Hydra's multirun on Ray: `hydra_plugins/edgesim_ray_launcher`.)"""
    remote = ray.remote(num_cpus=num_cpus, max_retries=0, runtime_env={"env_vars": {SWEEP_JOB_ENV: "1"}})(fn)
    return ray.get([remote.remote(*args) for args in calls])


def _what_died(exc: ray.exceptions.RayError, running: str) -> str:
    """What a Ray error says died, in words (`running`: what the process was doing)."""
    E = ray.exceptions
    if isinstance(exc, (E.NodeDiedError, E.LocalRayletDiedError)):
        return f"a Ray node (its raylet) died while {running}"
    if isinstance(exc, (E.RayActorError, E.WorkerCrashedError)):
        return f"a Ray worker process died while {running}"
    if isinstance(exc, E.ObjectLostError):
        return f"Ray lost a result while {running} (the process or node that held it died)"
    if isinstance(exc, E.OutOfMemoryError):
        return f"Ray killed a worker process for lack of memory while {running}"
    if isinstance(exc, E.RaySystemError):
        return f"Ray's own system failed while {running}"
    return f"Ray failed while {running}"


def _detail(exc: ray.exceptions.RayError) -> str:
    """Ray's message in one line: the error's type, its first line, and the process's id and
    exit type where Ray gives them."""
    text = str(exc).strip()
    first = text.splitlines()[0].strip().rstrip(".") if text else ""
    parts = [f"{type(exc).__name__}: {first}" if first else type(exc).__name__]
    pid = re.search(r"\bpid: (\d+)", text)
    if pid:
        parts.append(f"pid {pid.group(1)}")
    exit_type = re.search(r"Worker exit type: (\w+)", text)
    if exit_type:
        parts.append(f"exit type {exit_type.group(1)}")
    return "; ".join(parts)


@contextlib.contextmanager
def _failures(running: str) -> Iterator[None]:
    """Inside, a Ray process that died or a result Ray lost is a `BackendFailure` naming what
    died; a task's own exception (`RayTaskError`) passes as it is."""
    try:
        yield
    except ray.exceptions.RayTaskError:
        raise
    except ray.exceptions.RayError as exc:
        raise BackendFailure("ray", _what_died(exc, running), _detail(exc)) from None


@ray.remote(num_cpus=1)
class _Worker:
    """Runs jobs of one or more ClientApps; keeps the last apps (FLOP counts: its process's cache)."""

    def __init__(self, optimizer_copies: int, threads: int):
        self.optimizer_copies = optimizer_copies
        self.threads = threads
        self.apps: dict[str, object] = {}

    def ready(self) -> bool:
        return True

    def call(self, fn, seed: int, *args):
        """One call of `RayBackend.map` on this actor."""
        with torch_threads(self.threads):
            return run_call(fn, args, seed)

    def run(self, app_box: list, identity: tuple, jobs: list[tuple[int, Message, Context, int]]) -> list:
        set_task_identity(identity)  # what a Flower message built here reads as its sender: the driver's
        ref = app_box[0]  # boxed, so Ray hands over the reference, not a fresh copy per call
        key = ref.hex()
        app = self.apps.get(key)
        if app is None:
            while len(self.apps) >= _APPS_KEPT:
                self.apps.pop(next(iter(self.apps)))
            app = self.apps[key] = ray.get(ref)
        out = []
        with torch_threads(self.threads):
            for index, message, context, seed in jobs:
                ex = run_job(app, message, context, seed, PROCESS_COSTS, self.optimizer_copies)
                out.append((index, ex, context.state))
        return out


@ray.remote(num_cpus=1, max_retries=0)
def _call(fn, seed: int, threads: int, *args):
    """One call of `RayBackend.map` on a back end without actors: a Ray task of 1 CPU."""
    with torch_threads(threads):
        return run_call(fn, args, seed)


class RayBackend:
    """Runs a step's ClientApp jobs in parallel on a pool of Ray actors (`actors=False`: no pool;
    `map` runs its calls as Ray tasks, `num_workers` of them at a time)."""

    name = "ray"

    def __init__(
        self,
        optimizer_copies: int = 1,
        torch_threads: int | None = None,
        *,
        address: str | None = None,
        num_cpus: int | None = None,
        num_workers: int | None = None,
        actors: bool = True,
    ):
        if os.environ.get(SWEEP_JOB_ENV):
            raise ConfigError(
                "backend=ray: this job already runs as a Ray task of hydra/launcher=edgesim_ray, "
                "whose jobs are the parallel units; allowed here: backend=local"
            )
        self.optimizer_copies = optimizer_copies
        # None: the driver's own count, so the workers compute as this process would
        self.torch_threads = torch_threads or torch.get_num_threads()
        self._started = start_ray(address, num_cpus)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.slots = num_workers or max(cpus, 1)  # calls of `map` at a time
        self._workers = [
            _Worker.remote(optimizer_copies, self.torch_threads) for _ in range(self.slots if actors else 0)
        ]
        # the actors import torch and Flower while the job goes on setting up; waited for at first use
        self._starting = [w.ready.remote() for w in self._workers]
        self._app = None
        self._app_box: list = []

    @property
    def num_workers(self) -> int:
        return len(self._workers)

    def _started_workers(self) -> list:
        """The actors, once every one has started (an actor that died starting: `BackendFailure`)."""
        if self._starting:
            pending = self._wait_starting(START_TIMEOUT_S)
            if pending:
                starting, self._starting = len(self._starting), []  # `close` need not wait for them again
                free = ray.available_resources().get("CPU", 0.0)
                total = ray.cluster_resources().get("CPU", 0.0)
                raise BackendFailure(
                    "ray",
                    f"{len(pending)} of its {starting} workers could not start within {START_TIMEOUT_S:g} s",
                    f"each needs 1 CPU; the cluster has {free:g} of {total:g} free",
                )
            with _failures("starting its workers"):
                ray.get(self._starting)
            self._starting = []
        return self._workers

    def _wait_starting(self, timeout_s: float) -> list:
        """Wait (at most `timeout_s`) until every actor has started or died; those still pending."""
        _, pending = ray.wait(self._starting, num_returns=len(self._starting), timeout=timeout_s)
        return pending

    def _box(self, app) -> list:
        if app is not self._app:  # ship each ClientApp once
            self._app, self._app_box = app, [ray.put(app)]
        return self._app_box

    def execute(self, app, jobs: list[tuple[Message, Context, int]], done: Done | None = None) -> list[Execution]:
        if not jobs:
            return []
        identity = task_identity()
        n = min(len(self._started_workers()), len(jobs))
        batches: list[list] = [[] for _ in range(n)]
        for i, (message, context, seed) in enumerate(jobs):
            batches[i % n].append((i, message, context, seed))
        with _failures("running the ClientApp"):
            box = self._box(app)
            futures = [w.run.remote(box, identity, batch) for w, batch in zip(self._workers, batches)]
            parts = ray.get(futures)
        results: list[Execution | None] = [None] * len(jobs)
        for part in parts:
            for index, ex, state in part:
                results[index] = ex
                jobs[index][1].state = state  # what the ClientApp kept in its context
        return report(done, results)  # a worker's jobs come back together, at its batch's end

    def map(self, fn, calls, seeds=None) -> list:
        """`[fn(*args) for args in calls]` as Ray tasks of 1 CPU, `slots` at a time (the next
        call starts as soon as one ends), each under its torch seed (default 0); results in the
        order of `calls`. With actors, the calls run on them (they hold the CPUs), one per actor at a time."""
        seeds = call_seeds(calls, seeds)
        shared_ids = Counter(id(a) for args in calls for a in args)
        refs: dict[int, ray.ObjectRef] = {}

        def ship(a):  # an object several calls share goes to the object store once
            if shared_ids[id(a)] < 2 or isinstance(a, (bool, int, float, str, type(None))):
                return a
            if id(a) not in refs:
                refs[id(a)] = ray.put(a)
            return refs[id(a)]

        pending = list(range(len(calls)))
        running: dict = {}  # task -> (index of its call, the actor it runs on or None)
        idle = list(self._started_workers())
        slots = len(self._workers) or self.slots
        results: list = [None] * len(calls)
        with _failures("running the job's computations"):
            while pending or running:
                while pending and len(running) < slots:
                    i = pending.pop(0)
                    args = [ship(a) for a in calls[i]]
                    actor = idle.pop(0) if idle else None
                    ref = (
                        actor.call.remote(fn, seeds[i], *args)
                        if actor is not None
                        else _call.remote(fn, seeds[i], self.torch_threads, *args)
                    )
                    running[ref] = (i, actor)
                (done,), _ = ray.wait(list(running), num_returns=1)
                i, actor = running.pop(done)
                if actor is not None:
                    idle.append(actor)
                try:
                    results[i] = ray.get(done)
                except ray.exceptions.RayTaskError as exc:  # the call's own exception, as on the local back end
                    cause = getattr(exc, "cause", None)
                    raise (cause if isinstance(cause, Exception) else exc) from None
        return results

    def stop_workers(self) -> None:
        """Free the workers' CPUs (Ray stays up if this back end started it, until `close`);
        actors still being created are waited for first (the module's docstring tells why)."""
        if self._starting:
            self._wait_starting(STOP_WAIT_S)
        for w in self._workers:
            ray.kill(w)
        self._workers, self._starting = [], []

    def close(self) -> None:
        self.stop_workers()
        if self._started:
            stop_ray()
        self._started = False

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

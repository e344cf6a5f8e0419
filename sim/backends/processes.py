"""The local parallel back end (`backend=processes`): a step's computations spread over worker
processes of this machine, forked from the job's process.

The workers are forked (`multiprocessing`'s "fork" start method) from the already-imported
process, so none pays the imports of torch and Flower again; they persist from one step to the
next, each computing with one torch thread (`torch_threads` must be 1: GNU OpenMP is not
fork-safe, and a forked worker's first parallel region on more threads waits forever for the
threads of a pool the job's process had started). `processes` workers (null: `free_cores`, the cores
not busy with other processes, at least 1; the run says how many and why). `torch_device` must be
`cpu` (checked with the settings): a forked process cannot use CUDA once its parent has.

`execute(app, jobs)` (the federated clients): the workers are forked with the ClientApp in
their memory (a ClientApp need not be picklable); a different ClientApp (the next strategy of a
comparison) forks a fresh pool. The jobs go, pickled in batches, to the next idle worker and run there
exactly as on the local back end (`sim.backends.run_job`: its own torch seed, the same number
of torch threads, the same meter, the process's FLOP cache `sim.meter.PROCESS_COSTS` inherited
at the fork); the worker returns the `Execution` (reply, FLOPs, peak memory) and what the app
kept in the job's `Context.state`, a batch's results in one message. So the CSVs are
byte-identical to `backend=local`. A batch is a quarter of a worker's fair share of what is
left ("guided" scheduling, `_batch_size`): a round's model, which every message of the round
carries, is pickled once per batch instead of once per client, and this process wakes once
per batch; the batches shrink to single tasks at the end of a step, so the workers end it
within a task of each other.

`map(fn, calls, seeds)` (NoNN, NAIR, mcPipe, DREAM): the calls, pickled (`fn` by reference),
batched in the same way, to the next idle worker, under its seed (`sim.backends.run_call`); results in the order of
`calls`. A call's own exception is raised as it is (the one of the first failing call, once the
calls already running have ended).

A worker that dies under a step (killed, out of memory, a computation that ends its process) is
a `BackendFailure` naming `backend=processes` and the worker's pid and exit status; the other
workers are stopped. Workers are stopped on `close`, on an error in this process during a step
(Ctrl-C included; they ignore SIGINT themselves), at interpreter exit, and they end on their own
when the process that forked them is gone.
"""

from __future__ import annotations

import atexit
import gc
import math
import multiprocessing
import os
import pickle
import signal
import time
from collections import deque
from collections.abc import Callable, Sequence
from multiprocessing.connection import wait
from pathlib import Path

import torch

from sim.backends.base import BackendFailure, Done, Execution, Job, call_seeds, run_call, run_job, torch_threads
from sim.config import ConfigError
from sim.cpu import cpu_readings, start_readings
from sim.meter import PROCESS_COSTS

__all__ = ["ProcessBackend", "cpu_readings", "free_cores"]

_FORK = multiprocessing.get_context("fork")
_PICKLE = pickle.HIGHEST_PROTOCOL
_NO_APP = object()  # a pool forked for `map` only
_WINDOW_MAX_S = 4.0  # a window longer than this: the cores free counted afresh (what is free now)


def free_cores(sample_s: float = 0.2, since: tuple[float, float, float] | None = None) -> tuple[int, str]:
    """How many workers the cores free now allow (at least 1), and how that was found, in words.

    The cores this process may run on (its affinity, and the container's CPU quota where one is
    set) less the cores other processes keep busy now: the machine's CPU time over at least
    `sample_s` seconds (/proc/stat) less this process's own. `since`: readings taken earlier
    (`cpu_readings()`), the window's start, so that the job's own set-up fills the window instead
    of a wait (only what is left of `sample_s` is waited). Where /proc is not there: the 1-minute
    load average less this process's own share of it (runnable since it started; the load
    average is an exponential average with a 60 s time constant, so its own share after t seconds
    is 1 - exp(-t / 60)). The load average lags: a job started right after another process ended
    saw that process's load for a minute and started 1 worker on an idle 2-core machine (the
    1,000-node benchmark, 2026-12-03), as did counting a job's own start-up."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None and quota < cores:
        cores = max(1, int(quota))
    others = _busy_elsewhere(sample_s, since)
    if others is not None:
        return max(1, cores - round(others)), f"{cores} cores, {others:.2f} of them busy with other processes"
    try:
        load = os.getloadavg()[0]
    except OSError:
        return cores, f"{cores} cores, load unknown"
    own = 1.0 - math.exp(-_age_s() / 60.0)
    others = max(0.0, load - own)
    free = max(1, cores - round(others))
    return free, f"{cores} cores, load {load:.2f} of which this run {own:.2f}"


def _window_start() -> tuple[float, float, float] | None:
    """Where the CPU readings' window starts: the command's first reading if recent, else now."""
    start = start_readings()
    if start is not None and time.monotonic() - start[2] <= _WINDOW_MAX_S:
        return start
    return cpu_readings()


def _busy_elsewhere(sample_s: float, since: tuple[float, float, float] | None = None) -> float | None:
    """The cores' worth of CPU time other processes used from `since` (None: now) over at least
    `sample_s` seconds (this process sleeps for what is left of them; what it used meanwhile is
    taken off); None without /proc/stat."""
    start = since or cpu_readings()
    if start is None:
        return None
    time.sleep(max(0.0, sample_s - (time.monotonic() - start[2])))
    end = cpu_readings()
    if end is None:
        return None
    (b0, c0, t0), (b1, c1, t1) = start, end
    return max(0.0, ((b1 - b0) - (c1 - c0)) / max(t1 - t0, 1e-9))


def _age_s() -> float:
    """Seconds since this process started (Linux: /proc; elsewhere 0, counting none of the load as its own)."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


def _cgroup_quota() -> float | None:
    """The CPUs a cgroup v2 quota allows this process (`cpu.max`: quota and period), None if unlimited or unknown."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        return None


def _warm_up() -> None:
    """What this process would otherwise import lazily in every worker: torch's first optimiser
    imports torch._dynamo (over a second of CPU; several on a busy machine), unless a job has
    deferred it to the first compilation (`sim.torch_internals`, as `sim.jobs.run` does), when
    this builds an optimiser and imports nothing."""
    torch.optim.SGD([torch.zeros(1, requires_grad=True)])


def _signal_name(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def _serve(conn, inherited: list, app, threads: int, optimizer_copies: int) -> None:
    """A worker's loop: run the batches of tasks its pipe brings, one after another, each
    batch's results back in one message, until told to stop or its parent is gone."""
    # what the worker was forked with (torch's and Flower's modules, the data, the app) out of the
    # collector's reach: its collections then walk only what it makes, not the heap it shares with
    # the job's process, whose pages they would write to (the reference bits) and so copy
    gc.freeze()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops us
    for other in inherited:  # the parent's ends of the pipes of the workers forked before this one
        other.close()
    from experiments.federated.internals import set_task_identity

    parent = os.getppid()
    torch.set_num_threads(threads)
    while True:
        while not conn.poll(1.0):
            if os.getppid() != parent:  # the job's process died without stopping us
                return
        try:
            batch = pickle.loads(conn.recv_bytes())
        except EOFError:
            return
        if batch is None:
            return
        outs = []
        for kind, index, *rest in batch:
            try:
                with torch_threads(threads):
                    if kind == "job":
                        message, context, seed, identity = rest
                        set_task_identity(identity)  # the sender a Flower message built here reads: the driver's
                        ex = run_job(app, message, context, seed, PROCESS_COSTS, optimizer_copies)
                        outs.append((index, True, (ex, context.state)))
                    else:
                        fn, args, seed = rest
                        outs.append((index, True, run_call(fn, args, seed)))
            except Exception as exc:  # the computation's own error: the batch's other tasks are not run
                outs.append((index, False, exc))
                break
        try:
            payload = pickle.dumps(outs, protocol=_PICKLE)
        except Exception:  # a result (or an error) that does not pickle: each one's own, or its error in words
            payload = pickle.dumps([_picklable(out) for out in outs], protocol=_PICKLE)
        conn.send_bytes(payload)


def _picklable(out: tuple) -> tuple:
    """`out` if it pickles, else its task's error that does: the pickling error of a result, an
    error in words where the error itself does not pickle."""
    index, ok, value = out
    try:
        pickle.dumps(value, protocol=_PICKLE)
        return out
    except Exception as exc:
        error = exc if ok else value
    try:
        pickle.dumps(error, protocol=_PICKLE)
        return index, False, error
    except Exception:
        return index, False, RuntimeError(f"{type(error).__name__}: {error}")


def _batch_size(pending: int, workers: int) -> int:
    """How many of the `pending` tasks the next idle worker takes at once ("guided" scheduling):
    a quarter of a fair share, so that large batches (one pickle of what a round's messages share,
    one wake-up of this process for many replies) come first and single tasks last, and the
    workers finish a step within a task of each other."""
    return max(1, pending // (4 * workers))


class _Worker:
    def __init__(self, process, conn):
        self.process, self.conn = process, conn

    @property
    def pid(self) -> int:
        return self.process.pid


def _stop(workers: list[_Worker], kill: bool = False) -> None:
    """Stop `workers`: asked to end (or, with `kill`, terminated), then killed if they linger."""
    for w in workers:
        try:
            if kill:
                w.process.terminate()
            else:
                w.conn.send_bytes(pickle.dumps(None))
        except (OSError, ValueError):
            pass
    for w in workers:
        w.process.join(timeout=5)
        if w.process.is_alive():
            w.process.kill()
            w.process.join(timeout=5)
        w.conn.close()
        w.process.close()


class ProcessBackend:
    """Runs a step's ClientApp jobs, or a workload's `map` calls, on `workers` forked worker
    processes (None: `free_cores()`), each with one torch thread (`torch_threads` must be 1)."""

    name = "processes"

    def __init__(self, optimizer_copies: int = 1, torch_threads: int | None = 1, workers: int | None = None):
        if torch_threads != 1:
            # GNU OpenMP is not fork-safe: a forked worker's first parallel region waits forever
            # for the threads of a pool the parent started (any torch op on > 1 thread does)
            raise ConfigError(
                f"torch_threads={torch_threads!r}: backend=processes needs 1 (a forked worker hangs in "
                "OpenMP threads once the job's process has used its own); use backend=ray or backend=local for more"
            )
        self.optimizer_copies = optimizer_copies
        self.torch_threads = 1
        self._num_workers, self.chosen = workers or None, None
        # without `processes=N`: the CPU readings start at the command's start (`sim.cpu`; now,
        # where that is over `_WINDOW_MAX_S` ago or unknown) and end when the count is first
        # needed (the first step forks the pool), so the start-up and the job's set-up, not a
        # wait, fill the window
        self._since = None if workers else _window_start()
        self._workers: list[_Worker] = []
        self._app = _NO_APP
        self._atexit = False
        self._announced = False

    @property
    def num_workers(self) -> int:
        """The worker processes: `processes=N`, else the cores free (`free_cores`), counted once,
        over the window since the command started or the back end was made (a fresh sample where
        that is over `_WINDOW_MAX_S`: what is free now, not on average since long ago); said at
        the first step."""
        if self._num_workers is None:
            since = self._since
            if since is not None and time.monotonic() - since[2] > _WINDOW_MAX_S:
                since = None
            self._num_workers, why = free_cores(since=since)
            self.chosen = f"the cores free: {why}; processes=N sets it"
        return self._num_workers

    @property
    def pids(self) -> list[int]:
        """The workers' process ids (none before the first step, or after `close`)."""
        return [w.pid for w in self._workers]

    def _start(self, app) -> None:
        """Fork the pool, with `app` in the workers' memory (replacing a pool forked with another)."""
        self.close()
        _warm_up()  # once here, not once per worker
        workers = self.num_workers  # counted now, at the latest
        if self.chosen and not self._announced:  # what a user on a busy machine would otherwise not know
            from sim.console import say

            say(f"backend=processes: {workers} worker process{'es' * (workers > 1)} ({self.chosen})")
            self._announced = True
        conns = []
        try:
            for _ in range(workers):
                parent_end, child_end = _FORK.Pipe()
                process = _FORK.Process(
                    target=_serve,
                    args=(child_end, list(conns), app, self.torch_threads, self.optimizer_copies),
                    name="edgesim-worker",
                )
                process.start()
                child_end.close()
                conns.append(parent_end)
                self._workers.append(_Worker(process, parent_end))
        except BaseException:
            self.close(kill=True)
            raise
        self._app = app
        if not self._atexit:  # registered after multiprocessing's own exit hook, so it runs first
            atexit.register(self.close, True)
            self._atexit = True

    def _run(self, tasks: list[tuple], running: str, arrived: Callable[[int, object], None] | None = None) -> list:
        """The tasks in batches (`_batch_size`), each batch to the next idle worker; the results
        (index-ordered), each told to `arrived` in index order once it and those before it are
        in, while the workers run the next batches; a worker that dies is a `BackendFailure`; a
        task's own exception is raised once the running ones have ended."""
        results: list = [None] * len(tasks)
        have = [False] * len(tasks)
        told = 0  # the results told to `arrived` so far: a prefix
        pending = deque(range(len(tasks)))
        idle = list(self._workers)
        busy: set[_Worker] = set()
        errors: dict[int, BaseException] = {}

        def dispatch() -> None:
            while pending and idle and not errors:
                w = idle.pop()
                batch = [tasks[pending.popleft()] for _ in range(_batch_size(len(pending), len(self._workers)))]
                try:  # one pickle per batch: what its tasks share (a round's model) is written once
                    w.conn.send_bytes(pickle.dumps(batch, protocol=_PICKLE))
                except OSError:
                    self._died(w, running)
                busy.add(w)

        try:
            dispatch()
            while busy:
                by_handle = {}
                for w in busy:
                    by_handle[w.conn] = w
                    by_handle[w.process.sentinel] = w
                received = []
                for w in {by_handle[h] for h in wait(list(by_handle))}:
                    if not w.conn.poll():
                        self._died(w, running)
                    try:
                        received.append(w.conn.recv_bytes())
                    except (EOFError, OSError):
                        self._died(w, running)
                    busy.discard(w)
                    idle.append(w)
                dispatch()  # the idle workers get their next batch before the replies are read
                for payload in received:
                    for index, ok, value in pickle.loads(payload):
                        if ok:
                            results[index], have[index] = value, True
                        else:
                            errors[index] = value
                if arrived is not None:
                    while told < len(tasks) and have[told]:
                        arrived(told, results[told])
                        told += 1
        except BaseException:
            # a dead worker, Ctrl-C, a task that does not pickle: the workers may be mid-task; stop
            # them all (the next step forks a fresh pool)
            self.close(kill=True)
            raise
        if errors:
            raise errors[min(errors)]
        return results

    def _died(self, w: _Worker, running: str):
        w.process.join(timeout=5)
        raise BackendFailure(
            "processes",
            f"a worker process died while {running}",
            f"pid {w.pid}, {_signal_name(w.process.exitcode)}",
        )

    def execute(self, app, jobs: Sequence[Job], done: Done | None = None) -> list[Execution]:
        if not jobs:
            return []
        from experiments.federated.internals import task_identity

        if app is not self._app or not self._workers:
            self._start(app)
        identity = task_identity()
        tasks = [("job", i, message, context, seed, identity) for i, (message, context, seed) in enumerate(jobs)]
        results: list[Execution] = []

        def arrived(index: int, value: tuple) -> None:
            ex, state = value
            jobs[index][1].state = state  # what the ClientApp kept in its context
            results.append(ex)
            if done is not None:
                done(index, ex)

        self._run(tasks, "running the ClientApp", arrived)
        return results

    def map(self, fn: Callable, calls: Sequence[tuple], seeds: Sequence[int] | None = None) -> list:
        """`[fn(*args) for args in calls]` on the workers, the next call to the next idle one,
        each under its torch seed (default 0); results in the order of `calls`."""
        seeds = call_seeds(calls, seeds)
        if not calls:
            return []
        if not self._workers:
            self._start(self._app)
        tasks = [("call", i, fn, tuple(args), seed) for i, (args, seed) in enumerate(zip(calls, seeds))]
        return self._run(tasks, "running the job's computations")

    def close(self, kill: bool = False) -> None:
        """Stop the workers (`kill`: at once, without waiting for them to finish what they run)."""
        workers, self._workers = self._workers, []
        self._app = _NO_APP
        if self._atexit:
            atexit.unregister(self.close)
            self._atexit = False
        _stop(workers, kill)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close(kill=exc[0] is not None)

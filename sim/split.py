"""A single run starts as two processes, one per core: the job's and the command line's.

Of a small run's ~1.4 s, ~0.95 s go to importing torch and Flower and ~0.25 s to the command
line: importing Hydra and the settings, composing and checking the config, making the run
folder and its log. Neither needs the other until the job begins, so on a machine with two
cores or more the command forks before its first import (`split`, from `sim.start.begin`):

* the process the shell started (its pid, its exit status) becomes the job's process: it imports
  torch and what a job imports first, then runs the job the command line sends it (`_serve`),
  with the command line's working folder, environment and Hydra's logging of the job;
* its child is the command line, unchanged up to the job: Hydra composes the config, the checks
  refuse a bad setting (one line, exit status 2, nothing written), `@hydra.main`'s run folder,
  `.hydra/` files and log are made; where the job would run, `run` renders the YAML of the
  job's settings (`sim.yamltext`: PyYAML is loaded here already) and sends it with the typed
  config to the job's process, waits for the outcome, then handles it as it would a job run in
  its own process (a refused setting's line and status 2, a fault's line and status 1, any
  other exception Hydra's traceback, with the job process's own traceback added as a note);
* when the command line ends, the job's process ends with its exit status.

The command line begins its work once the job's process is about half-way through torch's import
(`_Gate`: when it imports `sim.torch_internals.IMPORT_MIDPOINT`, or when the import ends if it
never does). Two processes loading modules at once slow each other on this machine (not so a
busy loop: the cost is in the loading, likely the file system's shared lookups): beside the
command line's imports, the first half of torch's import, where it loads ~800 of its ~1,000
modules, took 75-93 ms longer than alone (medians of 30 paired runs); begun at the gate, the
command line costs it nothing measurable (-12 ms) and still sends the job ~0.4 s before the job's
process can take it. A setting Hydra refuses is refused after the wait: here 1.3-1.4 s instead
of 0.7-1.0 s.

A sweep (`-m`) does not split: its command line composes and checks every job before the first
one runs, and the checks import torch and the workload's modules (a user's app among them), so
split, both processes would import them (measured: a sweep of 4 ten-round jobs 0.13 s slower
split than in one process). Nor does a command that runs no job (`--help`, `--cfg`, shell
completion). Ctrl-C reaches both processes: the job's process takes it while the job runs (the
job's interrupt, handed to the command line as its own), the command line while it composes or
checks. The results are the same files, byte for byte, as from one process
(tests/e2e/test_split.py).

`EDGESIM_SPLIT_START`: `auto` (the default: split when this process may run on two cores or
more), `1` (always, where the system can fork), `0` (never: one process, as before). On one core
splitting gains nothing: the two halves would take turns.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys

__all__ = ["ENV", "began", "run", "split", "wanted"]

ENV = "EDGESIM_SPLIT_START"
CHOICES = ("auto", "0", "1")

# in the command line's process after a split: the pipe's ends to and from the job's process
_jobs_out = None
_outcomes_in = None
_environ_at_split: dict[str, str] = {}


def wanted() -> bool:
    """Whether the command should split (`EDGESIM_SPLIT_START`; a value it does not know: the
    one-line error, exit status 2)."""
    value = os.environ.get(ENV, "auto")
    if value not in CHOICES:
        from sim.console import fail

        fail(f"{ENV}={value!r}: unknown value; allowed: {', '.join(CHOICES)}")
    if value == "0" or not hasattr(os, "fork"):
        return False
    return value == "1" or (hasattr(os, "sched_getaffinity") and len(os.sched_getaffinity(0)) >= 2)


def began() -> bool:
    """Whether this process is the command line of a split command (a process it forks is not:
    `_forget`)."""
    return _jobs_out is not None


def split() -> None:
    """Fork: returns in the child, which goes on as the command line; the parent becomes the
    job's process and never returns (it ends with the command line's exit status)."""
    global _jobs_out, _outcomes_in, _environ_at_split
    jobs_r, jobs_w = os.pipe()
    outcomes_r, outcomes_w = os.pipe()
    gate_r, gate_w = os.pipe()
    _environ_at_split = dict(os.environ)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    pid = os.fork()
    if pid == 0:  # the command line
        _end_with_parent()
        os.close(jobs_r)
        os.close(outcomes_w)
        os.close(gate_w)
        _jobs_out, _outcomes_in = os.fdopen(jobs_w, "wb"), os.fdopen(outcomes_r, "rb")
        os.register_at_fork(after_in_child=_forget)  # a process it forks is not the command line
        _wait_at_gate(gate_r)
        return
    os.close(jobs_w)
    os.close(outcomes_r)
    os.close(gate_r)
    _serve(os.fdopen(jobs_r, "rb"), os.fdopen(outcomes_w, "wb"), pid, _Gate(gate_w))


class _Gate:
    """Opens when the job's process has imported `sim.torch_internals.IMPORT_MIDPOINT` (a
    finder first on `sys.meta_path`, asked at every import) or, at the latest, when its import of
    torch ends (`open`): a byte and the end of the pipe to the command line, which waits for it
    before its own first import (`_wait_at_gate`)."""

    def __init__(self, fd: int):
        from sim.torch_internals import IMPORT_MIDPOINT

        self.fd: int | None = fd
        self.after = IMPORT_MIDPOINT

    def find_spec(self, name, path=None, target=None):
        if self.fd is not None and self.after in sys.modules:
            self.open()
        return None  # the import goes on as if the gate were not there

    def open(self) -> None:
        if self.fd is None:
            return
        try:
            os.write(self.fd, b"\0")
        except BrokenPipeError:  # the command line has ended (a refused option, a kill)
            pass
        os.close(self.fd)
        self.fd = None


def _wait_at_gate(fd: int, timeout_s: float = 10.0) -> None:
    """The command line's first step: wait until the job's process is past the part of torch's
    import that two importing processes slow each other in (`sim.torch_internals.IMPORT_MIDPOINT`).
    Its byte, the pipe's end (the job's process ended) or, should neither come, `timeout_s`."""
    import select

    select.select([fd], [], [], timeout_s)
    os.close(fd)


def _end_with_parent() -> None:
    """Where Linux offers it (`prctl(PR_SET_PDEATHSIG)`): the command line ends the moment the
    job's process does, as one process would end whole (a `kill` or the OOM killer names the pid
    the shell started)."""
    parent = os.getppid()
    try:
        import ctypes

        if ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL) != 0:  # 1: PR_SET_PDEATHSIG
            return
    except (OSError, AttributeError):  # not Linux: the command line ends when it next writes to the pipe
        return
    if os.getppid() != parent:  # the job's process ended before the request took effect
        os._exit(1)


def _forget() -> None:
    global _jobs_out, _outcomes_in
    _detach(_jobs_out, _outcomes_in)
    _jobs_out = _outcomes_in = None


def _detach(*ends) -> None:
    """In a process forked from one of the two: its copies of the pipe's ends point at the null
    device (so that the other process still sees the end of the pipe when this one's parent ends;
    the file objects close harmlessly; nothing buffered is written twice)."""
    null = os.open(os.devnull, os.O_RDWR)
    for end in ends:
        if end is not None:
            os.dup2(null, end.fileno())
    os.close(null)


def run(cfg, out_dir, *, in_sweep: bool = False) -> None:
    """`sim.jobs.run(cfg, out_dir, in_sweep=...)`: in the job's process when the command split
    (its exception, if any, raised here), else here."""
    if not began():
        from sim.jobs import run as run_here

        run_here(cfg, out_dir, in_sweep=in_sweep)
        return
    from sim.jobs import render_settings

    try:
        texts = render_settings(cfg)  # here, idle while the job's process imports torch: `sim.yamltext`
    except Exception:  # settings YAML cannot show: the job's process renders them and fails as it would alone
        texts = {}
    context = {"cwd": os.getcwd(), "environ": dict(os.environ), "logging": _job_logging(), "texts": texts}
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    try:
        pickle.dump((cfg, str(out_dir), in_sweep, context), _jobs_out, protocol=pickle.HIGHEST_PROTOCOL)
        _jobs_out.flush()
        interrupt = signal.signal(signal.SIGINT, signal.SIG_IGN)  # the job's process takes Ctrl-C
        try:
            outcome = pickle.load(_outcomes_in)
        finally:
            signal.signal(signal.SIGINT, interrupt)
    except (BrokenPipeError, EOFError):  # killed: the shell has its status; this process ends too
        from sim.console import fail

        fail(f"the job's process (pid {os.getppid()}) ended before the job did", status=1)
    if outcome is not None:
        exc, trace = outcome
        exc.add_note(f"(raised in the job's process, pid {os.getppid()}:)\n{trace.rstrip()}")
        raise exc


def _job_logging() -> tuple | None:
    """Hydra's logging of the job as its `run_job` set it up here (`hydra.job_logging`,
    `hydra.verbose`), as plain values; None outside a Hydra job."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    conf = OmegaConf.to_container(hc.job_logging, resolve=True) if hc.job_logging is not None else None
    verbose = hc.verbose if isinstance(hc.verbose, (bool, str)) else list(hc.verbose)
    return conf, verbose


def _serve(jobs_in, outcomes_out, command_pid: int, gate: _Gate) -> None:
    """The job's process: torch and a job's first modules imported, the job sent run, then the
    end with the command line's exit status. Until the job arrives, the command line's end (a
    refused setting) ends this process at once, torch's import unfinished or not."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C while no job runs: the command line's
    signal.signal(signal.SIGCHLD, lambda *_: _end_if_ended(command_pid))
    _end_if_ended(command_pid)  # if it ended before the handler was set
    os.register_at_fork(after_in_child=lambda: _detach(jobs_in, outcomes_out))  # its workers hold no end
    sys.meta_path.insert(0, gate)
    try:
        import torch  # noqa: F401  (first: `sim.start`)
    finally:
        gate.open()
        sys.meta_path.remove(gate)

    import sim.backends.base  # noqa: F401  (what `sim.jobs.run` imports first)
    import sim.jobs  # noqa: F401

    try:
        job = pickle.load(jobs_in)
    except EOFError:  # the command line has ended without sending it
        _wait_and_end(command_pid)
    except Exception as exc:  # a job that cannot be read here: its error is the outcome
        outcome = _portable(exc), _trace()
    else:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the job's worker processes end as they do
        outcome = _run_sent(*job)
    try:
        pickle.dump(outcome, outcomes_out, protocol=pickle.HIGHEST_PROTOCOL)
        outcomes_out.flush()
    except BrokenPipeError:  # the command line has ended (killed)
        pass
    _wait_and_end(command_pid)


def _wait_and_end(command_pid: int) -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    _end(command_pid, os.waitpid(command_pid, 0)[1])


def _end_if_ended(command_pid: int) -> None:
    try:
        pid, status = os.waitpid(command_pid, os.WNOHANG)
    except ChildProcessError:  # reaped already: the main loop ends this process
        return
    if pid == command_pid:
        _end(command_pid, status)


def _end(command_pid: int, status: int) -> None:
    """This process's end, with the exit status of the command line (`status`, as `waitpid` gave it)."""
    code = os.waitstatus_to_exitcode(status)
    if code < 0:  # Ctrl-C: the command line has said so (`KeyboardInterrupt`); another signal: say it here
        if -code != signal.SIGINT:
            print(f"error: the command line's process (pid {command_pid}) was ended by signal {-code}", file=sys.stderr)
        code = 128 - code
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


def _run_sent(cfg, out_dir: str, in_sweep: bool, context: dict):
    """One job sent by the command line, run here; None, or its exception and traceback."""
    from sim.jobs import run as run_here

    _take(context)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        run_here(cfg, out_dir, in_sweep=in_sweep)
        return None
    except BaseException as exc:  # SystemExit and Ctrl-C included: the command line decides
        return _portable(exc), _trace()
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for stream in (sys.stdout, sys.stderr):
            stream.flush()


def _trace() -> str:
    import traceback

    return traceback.format_exc()


def _portable(exc: BaseException) -> BaseException:
    """`exc` if it survives a pickle round trip, else a RuntimeError that names it."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}")


def _take(context: dict) -> None:
    """The command line's working folder, environment (what it changed since the split),
    Hydra's logging of the job and the texts it rendered of the job's settings, here."""
    from sim import yamltext

    os.chdir(context["cwd"])
    yamltext.take(context["texts"])
    environ = context["environ"]
    for key in [k for k in os.environ if k in _environ_at_split and k not in environ]:
        del os.environ[key]
    os.environ.update({k: v for k, v in environ.items() if _environ_at_split.get(k) != v})
    if context["logging"] is not None:
        _configure_logging(*context["logging"])


def _configure_logging(conf: dict | None, verbose) -> None:
    """What Hydra's `configure_log` does with the job's logging settings (the same dictionary,
    which the command line's Hydra has already applied, and checked, for the job)."""
    import logging
    import logging.config

    if conf is None:
        root = logging.getLogger()
        root.setLevel(logging.INFO)
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
        root.addHandler(handler)
    elif conf.get("root") is not None:
        logging.config.dictConfig(conf)
    if verbose is True:
        logging.getLogger().setLevel(logging.DEBUG)
    elif verbose:
        for name in [verbose] if isinstance(verbose, str) else verbose:
            logging.getLogger(name).setLevel(logging.DEBUG)

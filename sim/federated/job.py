"""`run(cfg, out_dir)`: build the objects a config describes, simulate, write the reports.

Plain Python with typed dataclasses in and files out; the Hydra entry point is a thin
wrapper around it. The federated workload runs one simulation per compared strategy on the
same data partition, fleet and channel, and writes one folder per strategy plus a
comparison across them.
"""

from __future__ import annotations

import contextlib
import math
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord, RecordDict

from devices import Fleet
from experiments.common.torchdev import device_of, use_torch_device
from experiments.federated.internals import set_task_identity
from experiments.federated.records import ModelRecords
from experiments.federated.task import (
    PROBE_IMAGES,
    FederatedTask,
    evaluate_model,
    make_client_app,
    probe_activations,
    probe_model,
)
from sim.backends import make_backend
from sim.backends.base import Backend, torch_threads
from sim.backends.local import LocalBackend
from sim.config import Config, StrategyConfig
from sim.console import Progress, describe
from sim.federated.app import MissingRunConfigKey, RunConfig, missing_key_error
from sim.federated.build import build_strategy_of, flower_log, load_app, prepare
from sim.federated.grid import RUN_ID, SERVER_NODE_ID, FleetExhausted, SimGrid, TimeBudgetReached
from sim.federated.journal import Journal, JournaledBackend
from sim.federated.report import (
    CLIENT_COLUMNS,
    ROUND_COLUMNS,
    VariantResult,
    equal_time_accuracy,
    round_rows,
    summary,
    version_rows,
)
from sim.meter import WorkMeter
from sim.net import TIMELINE_COLUMNS
from sim.net.build import build_network
from sim.report import append_rows, header_of, plot_accuracy, plot_timeline, write_json, write_rows, write_text
from sim.runfolder import RunFolder
from sim.seeding import stream

__all__ = ["run", "simulate"]

WORKLOAD_USES = frozenset({"fleet", "channel", "strategy", "dataset", "compare"})  # as sim.federated registers it


@contextlib.contextmanager
def _flower_session(seed: int, log_level: str) -> Iterator[None]:
    """Flower's strategies sample nodes with the global `random`: seed it for the run and
    restore it after; set the task identity Flower's messages read; quiet Flower's log."""
    state = random.getstate()
    random.seed(int(stream(seed, "sampling").integers(2**63)))
    set_task_identity((RUN_ID, SERVER_NODE_ID, 1))
    try:
        # a user's ServerApp initialises its model from torch's global generator: seed it too;
        # weights a raw channel turned to inf/NaN are an outcome to report, not to warn about
        with flower_log(log_level), torch.random.fork_rng(devices=[]), np.errstate(over="ignore", invalid="ignore"):
            torch.manual_seed(int(stream(seed, "server").integers(2**62)))
            yield
    finally:
        random.setstate(state)


def _resolved(cfg: Config, scfg: StrategyConfig) -> str:
    """The settings one compared strategy ran with, as YAML: `strategy` is that strategy's own
    (Hydra's saved config names only the selected one); with one strategy, report.html's."""
    import dataclasses

    from sim.html import settings_text

    return settings_text(dataclasses.replace(cfg, strategy=scfg, compared={}))


def warn(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr, flush=True)


def _warn_app_timeout(cfg: Config) -> None:
    """Flower's strategies wait `timeout=3600` s for replies unless the app says otherwise: on a
    fleet whose devices go offline, a round can wait an hour of simulated time for one that left."""
    if cfg.fleet.availability < 1 or cfg.fleet.availability_trace:
        warn(
            f"fleet.availability={cfg.fleet.availability}: devices go offline, and Flower's strategies wait up to "
            "their default timeout=3600 s for each round's replies; pass a shorter timeout to strategy.start()"
        )


def _grid(cfg: Config, scfg: StrategyConfig, fleet: Fleet, client_app, backend: Backend) -> SimGrid:
    """The grid of one simulation: the fleet on its network, the ClientApp on the back end."""
    net, server = build_network(cfg, fleet, label=lambda d: str(d + 1))
    grid = SimGrid(
        fleet=fleet,
        net=net,
        server=server,
        client_app=client_app,
        seed=cfg.seed,
        backend=backend,
        run_config=cfg.workload.app.run_config,
        offer=cfg.fleet.offer,
        min_nodes=min(max(2, scfg.min_train_nodes), len(fleet)),
        time_budget_s=cfg.workload.time_budget_s,
        accept_non_finite=cfg.workload.accept_non_finite,
        client_ref=cfg.workload.app.client or "",
    )
    grid.on_error = warn
    return grid


def _progress(cfg: Config, scfg: StrategyConfig, task: FederatedTask | None, enabled: bool) -> Progress:
    """The run's progress: a user's app's rounds (as its run config says, if it says), the
    built-in server's rounds, or the simulated seconds of a time budget."""
    app_cfg, budget = cfg.workload.app, cfg.workload.time_budget_s
    if task is None:
        total = app_cfg.run_config.get("num-server-rounds", app_cfg.run_config.get("num_server_rounds"))
        _warn_app_timeout(cfg)
        return Progress("app", total if isinstance(total, int) else None, "round", enabled)
    if budget is None:
        return Progress(scfg.name, cfg.workload.rounds, "round", enabled)
    fmt = "{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} simulated s [{elapsed}<{remaining}]{postfix}"
    return Progress(scfg.name, budget, "simulated second", enabled, fmt)


def _serve_app(app_cfg, grid: SimGrid) -> None:
    """A user's ServerApp over `grid`, with its run config."""
    server_app = load_app(app_cfg.server, "workload.app.server")
    context = Context(
        run_id=RUN_ID,
        node_id=SERVER_NODE_ID,
        node_config={},
        state=RecordDict(),
        run_config=RunConfig(app_cfg.run_config),
    )
    try:
        server_app(grid, context)
    except MissingRunConfigKey as exc:  # escaped the app: a setting the user must give
        raise missing_key_error(exc.args[0], app_cfg.server, "workload.app.server") from None


def simulate(
    cfg: Config,
    scfg: StrategyConfig,
    fleet: Fleet,
    task: FederatedTask | None,
    progress: bool = True,
    backend: Backend | None = None,
    folder: Path | None = None,
    journal: Journal | None = None,
) -> VariantResult:
    """One federated simulation with strategy `scfg` (built-in workload when `task` is given,
    else the user's ServerApp/ClientApp of `cfg.workload.app`). With `folder`, its rows so far
    reach rounds.csv and clients.csv there as each round ends; with `journal`, its computations
    are journaled (and those already journaled replayed: `sim.federated.journal`)."""
    app_cfg = cfg.workload.app
    client_app = make_client_app(task) if task is not None else load_app(app_cfg.client, "workload.app.client")
    if task is None:
        client_app.python_memory = app_cfg.python_memory
    backend = backend or LocalBackend(cfg.workload.optimizer_copies, cfg.torch_threads)
    if journal is not None:
        backend = JournaledBackend(backend, journal)
    grid = _grid(cfg, scfg, fleet, client_app, backend)
    net = grid.net
    evals: dict[int, tuple[float, float]] = {}
    budget = cfg.workload.time_budget_s
    bar = _progress(cfg, scfg, task, progress)
    rows_so_far = _RowsSoFar(folder) if folder is not None else None

    def show(done: float) -> None:  # the bar to `done`, with the clock and the latest accuracy
        latest = evals[max(evals)][0] if evals else None
        bar.to(done, t=f"{grid.now_s:.1f} s", **({"accuracy": f"{latest:.3f}"} if latest is not None else {}))
        if rows_so_far is not None:
            rows_so_far.write(grid, evals, app_cfg)

    stopped = ""
    # the server's computations too (aggregation, evaluation) with a fixed thread count: a job's
    # numbers must not depend on the process it runs in (a sweep's jobs may run on Ray workers)
    with _flower_session(cfg.seed, cfg.log_level), bar, torch_threads(cfg.torch_threads):
        if budget is not None:
            grid.observer = grid.book.on_version = lambda _: show(min(grid.now_s, budget))
        elif task is not None:  # the built-in server: a step per model it evaluates
            grid.book.on_version = show
        else:  # a user's server app: a step per training phase
            grid.observer = lambda stats: show(bar.n + 1) if stats.phase == "train" else None
        try:
            if task is not None:
                _serve(cfg, scfg, grid, task, evals, journal)
            else:
                _serve_app(app_cfg, grid)
        except FleetExhausted as exc:  # counted, named and survived: the rounds so far are reported
            stopped = f"fleet exhausted: {exc}"
        except TimeBudgetReached as exc:  # the run's planned end
            stopped = str(exc)
        finally:
            if journal is not None:
                journal.settle()  # its last entry on disk before the run reports
    end_s = grid.finish()
    rounds, clients = _rows(grid, evals, app_cfg)
    if task is None and rounds and all(math.isnan(r.accuracy) for r in rounds):
        warn(
            f"workload.app.accuracy_metric={app_cfg.accuracy_metric!r}: the app's evaluate replies never carried it; "
            "rounds.csv's accuracy is empty (name the metric the app reports)"
        )
    timeline = net.timeline.sorted()
    return VariantResult(
        scfg.name, rounds, clients, summary(cfg, scfg, rounds, clients, grid, end_s, stopped), timeline
    )


def _rows(grid: SimGrid, evals: dict, app_cfg) -> tuple[list, list]:
    """rounds.csv's rows (a row per round, or per server version of an asynchronous server) and clients.csv's."""
    if grid.pushed:
        rounds = version_rows(grid.versions, evals, app_cfg, grid.model_finite)
    else:
        rounds = round_rows(grid.phases, evals, app_cfg, grid.model_finite)
    return rounds, [c for p in grid.phases for c in p.clients]


class _RowsSoFar:
    """rounds.csv and clients.csv of the rounds over so far (all but the latest, whose server
    work may still be owed), as each round ends: a run killed at any moment leaves valid CSVs of
    its finished rounds. rounds.csv (a row a round) is replaced whole; clients.csv (a row per
    client and round: 5,000 at 1,000 nodes and 10 rounds) gets the new rounds' rows appended in
    one write (`append_rows`), replaced whole only when the rows written before are not the
    start of the rows now (an asynchronous server's late rows). The run's end writes the final
    files whole (a straggler's row ends later)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.written: list = []  # the client rows in clients.csv, in order
        self.header: list[str] | None = None

    def write(self, grid: SimGrid, evals: dict, app_cfg) -> None:
        rounds, clients = _rows(grid, evals, app_cfg)
        last = max((r.round for r in rounds), default=0)
        write_rows([r for r in rounds if r.round < last], self.folder / "rounds.csv", ROUND_COLUMNS)
        done = [c for c in clients if c.round < last]
        n = len(self.written)
        if (
            self.header is not None
            and len(done) >= n
            and all(a is b for a, b in zip(done, self.written))
            and append_rows(done[n:], self.folder / "clients.csv", self.header)
        ):
            self.written = done
            return
        write_rows(done, self.folder / "clients.csv", CLIENT_COLUMNS)
        self.written, self.header = done, header_of(done, CLIENT_COLUMNS)


def _serve(
    cfg: Config, scfg: StrategyConfig, grid: SimGrid, task: FederatedTask, evals: dict, journal: Journal | None
) -> None:
    """The built-in ServerApp: strategy `scfg` over `grid`, evaluating centrally on the server's clock."""
    strategy = build_strategy_of(scfg, len(grid.fleet))
    model = task.build_model()
    initial_arrays = ArrayRecord(model.state_dict())  # from the CPU model: the same bytes on any device
    model = model.to(use_torch_device(task.torch_device))
    weights = ModelRecords(model)
    meter_cache: dict = {}
    x_test, y_test = (t.to(device_of(model)) for t in (task.data.x_test, task.data.y_test))  # moved once

    def evaluate() -> tuple[float, float, int]:
        with WorkMeter(meter_cache) as meter:  # the server's evaluation, on its clock
            loss, acc = evaluate_model(model, x_test, y_test)
        return acc, loss, meter.flops

    def evaluate_fn(rnd: int, arrays: ArrayRecord) -> MetricRecord:
        weights.load(arrays)
        grid.note_model(rnd, arrays)
        acc, loss, flops = journal.evaluation(rnd, arrays, evaluate) if journal is not None else evaluate()
        grid.server_flops += flops
        evals[rnd] = (acc, loss)
        grid.mark_version(rnd)  # the server holds model `rnd` (its time: once this evaluation is done)
        return MetricRecord({"accuracy": acc, "loss": loss})

    grid.probe = _probe(task)
    strategy.start(
        grid=grid,
        initial_arrays=initial_arrays,
        num_rounds=cfg.workload.rounds,
        timeout=scfg.timeout_s,
        train_config=ConfigRecord(),
        evaluate_fn=evaluate_fn,
    )


def _probe(task: FederatedTask):
    """The activation-divergence probe (`SimGrid.probe`): a client's trained weights, run in eval
    mode on the first `PROBE_IMAGES` test images, the same for every client and round. The
    simulator's observation: no device computes it and no clock advances."""
    model = probe_model(task.model_on_device())  # faster max pools (on the CPU), the same activations
    weights = ModelRecords(model)
    images = task.data.x_test[:PROBE_IMAGES].to(device_of(model))

    def probe(arrays: ArrayRecord) -> np.ndarray:
        weights.load(arrays)
        return probe_activations(weights.model, images)

    return probe


def run(cfg: Config, out_dir: Path | str, *, in_sweep: bool = False):
    """Run the job `cfg` and write its reports under `out_dir`; returns the summary rows (the
    federated job: a list of dicts, one per strategy, written without pandas; NoNN, NAIR and
    mcPipe: a DataFrame).

    One strategy: rounds.csv, clients.csv, summary.csv in `out_dir`. Several (`compare`):
    one folder per strategy, and comparison.csv in `out_dir`. Accuracy plots beside them (in
    a sweep, the comparison and the plots are written once for the whole sweep instead).
    """
    out_dir = Path(out_dir)
    variants, fleet, _link, task = prepare(cfg)
    results, wall_s = [], {}
    t0 = time.perf_counter()
    with make_backend(
        cfg, task=task if cfg.workload.vectorize else None
    ) as backend:  # one for every strategy (one FLOP cache; Ray started once)
        start_s = round(time.perf_counter() - t0, 3)
        for scfg in variants:
            t0 = time.perf_counter()
            folder = out_dir / scfg.name if len(variants) > 1 else out_dir
            write_text(_resolved(cfg, scfg), folder / "config.yaml")  # the settings this strategy ran with
            journal = Journal(RunFolder(out_dir).journal(scfg.name))
            results.append(simulate(cfg, scfg, fleet, task, cfg.progress, backend, folder, journal))
            wall_s[scfg.name] = round(time.perf_counter() - t0, 3)
    for res, scfg in zip(results, variants):
        folder = out_dir / res.strategy if len(results) > 1 else out_dir
        write_rows(res.rounds, folder / "rounds.csv", ROUND_COLUMNS)
        write_rows(res.clients, folder / "clients.csv", CLIENT_COLUMNS)
        write_rows([res.summary], folder / "summary.csv")
        write_rows(res.timeline, folder / "timeline.csv", TIMELINE_COLUMNS)
        if cfg.plots:
            plot_timeline(res.timeline, folder / "timeline.png", title=f"{res.strategy}: device states")
    # this machine's timings: not simulated, not reproducible, so never in a CSV
    write_json(
        {"backend": cfg.backend, "backend_start_s": start_s, "wall_s_per_strategy": wall_s}, out_dir / "wallclock.json"
    )
    equal_time_accuracy(results)
    summary = [r.summary for r in results]
    if not in_sweep:  # a sweep compares and plots once, over all its jobs
        if len(results) > 1:
            write_rows(summary, out_dir / "comparison.csv")
        rounds = [{**vars(row), "strategy": r.strategy} for r in results for row in r.rounds]
        if cfg.plots and any(not math.isnan(row["accuracy"]) for row in rounds):  # an app may report none
            title = describe(cfg, WORKLOAD_USES)
            plot_accuracy(rounds, ["strategy"], out_dir, title=title, target=cfg.workload.target_accuracy)
    return summary

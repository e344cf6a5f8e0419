"""Overhead of the simulator: wall time of a FedAvg run through `sim.federated.job.simulate` against a
plain PyTorch loop doing the same local training, as a ratio measured in one process.

    python benchmarks/overhead.py [--rounds N] [--repeats K] [--experiment NAME] [--profile]

The workload is the experiment's (default `fedmax_noniid`: digits, 2 label shards per client,
the mixed fleet, the CNN, its rounds, local epochs and batch size), run with `strategy=fedavg`
and `compare=[]`, composed with Hydra's compose API exactly as `python -m sim` would.

The plain loop does the same work with no Flower, no SimPy and no meter: per round, the very
clients whose `ClientApp` ran in the simulator (read from its clients.csv rows: everyone but
the dropped and those whose download was lost; out-of-memory clients and stragglers did run
the real training), each one loading the global weights into the one model (as the
built-in ClientApp does) and running `experiments.federated._train` under the same torch seed;
then FedAvg over the clients whose reply the simulator accepted (weighted by examples, in Flower's
order and arithmetic) and an
evaluation of the global model on the test set (round 0 too, as Flower's `Strategy.start`).
Both paths therefore compute the same models: the final accuracies are checked to agree.

The plain loop also computes rounds.csv's `activation_divergence`, which the simulator measures
for every strategy (FedMAX's metric; `sim.federated.job._probe`): each aggregated client's
trained weights, copied into a probe model of its own (`experiments.federated.task.probe_model`,
as the simulator's), run in eval mode on the first `PROBE_IMAGES` test images
(`probe_activations`), and after the last round `strategies.fedmax.activation_divergence` over
each round's clients (when the simulator builds its rows). It is work the experiment reports, as
the evaluation is, not machinery of the simulation, and it is not small: a 64-image forward per
aggregated client, 8-9% of the plain loop's time. So the plain loop's time in it is printed apart
(`the activation probe, in both paths`), and the two paths' divergences are checked to agree, as
the accuracies are. Until 2026-12-03 the plain loop skipped it and the probe counted as the
simulator's overhead (1.17x, median of 9 interleaved runs, against 1.05-1.09x with the probe
switched off).

One-time start-up (imports, data, Flower's and torch's first-use costs) is excluded by a short
warm-up of both paths. The figure held against the 1.10 target comes from `--repeats`
interleaved runs: one simulator run in which, right after the simulator's train phase of round
r, the plain loop runs its round r (timed apart and subtracted from the simulator's wall time).
The two paths then alternate every ~0.3 s and meet the same machine speed; on a shared machine
that speed drifts by tens of percent over seconds, which whole runs of ~10 s one after the
other cannot cancel. The median of the runs' ratios is the figure. `--alternating` whole runs
(ABBA order, wall and CPU time) follow, for comparison. Everything is printed as a table and
as a last line `RESULT {json}`.

`--profile` then runs the simulator once more under cProfile and lists the top project / flwr
functions by cumulative time, the known overhead items (meter, Flower (de)serialisation,
aggregation, channel, SimPy, pandas) and self time by package.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import math
import os
import platform
import pstats
import statistics
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
warnings.filterwarnings("ignore", category=FutureWarning, module="pyarrow.*")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from experiments.federated.task import (
    PROBE_IMAGES,
    FederatedTask,
    _train,
    evaluate_model,
    probe_activations,
    probe_model,
)
from sim.backends import torch_seeded, torch_threads
from sim.config import Config
from sim.federated.build import prepare
from sim.federated.job import simulate
from sim.report import frame
from sim.seeding import stream
from strategies.fedmax import activation_divergence
from strategies.objectives import ClientObjective

sys.path.insert(0, str(ROOT / "benchmarks"))
from common import finish, load_note

TARGET_RATIO = 1.10
# statuses of clients.csv rows whose ClientApp never ran: no availability, or download lost
NOT_RUN = ("dropped", "lost_down")


# --- the job ------------------------------------------------------------------------------
def compose_config(experiment: str, rounds: int | None, extra: list[str]) -> Config:
    """The experiment's config as `python -m sim +experiment=NAME strategy=fedavg compare=[]`."""
    import sim.__main__  # noqa: F401  (registers the config schema, as `python -m sim` does)

    overrides = [f"+experiment={experiment}", "strategy=fedavg", "compare=[]", "progress=false", *extra]
    if rounds is not None:
        overrides.append(f"workload.rounds={rounds}")
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "sim" / "conf"), version_base="1.3"):
        dcfg = compose(config_name="config", overrides=overrides)
        cfg = OmegaConf.to_object(dcfg)
        cfg.compared = sim.__main__.compared_params(cfg)
    return cfg


def with_rounds(cfg: Config, rounds: int) -> Config:
    return replace(cfg, workload=replace(cfg.workload, rounds=rounds))


# --- the two paths --------------------------------------------------------------------------
def run_sim(cfg: Config, job):
    variants, fleet, _link, task = job
    return simulate(cfg, variants[0], fleet, task, progress=False)


def schedule_of(clients, rounds: int) -> list[tuple[list[int], list[int]]]:
    """Per round: (node ids whose training ran, node ids whose reply was aggregated), from the
    simulator's client rows."""
    clients = frame(clients)
    train = clients[clients["phase"] == "train"]
    # a ClientApp that ran was metered: its row has FLOPs; one that never ran has none
    ran_mask = ~train["status"].isin(NOT_RUN)
    if not ((train["compute_flops"] > 0) == ran_mask).all():
        raise SystemExit("clients.csv: statuses and measured FLOPs disagree on which clients ran")
    out = []
    for rnd in range(1, rounds + 1):
        r = train[train["round"] == rnd].sort_values("node_id")
        ran = r.loc[~r["status"].isin(NOT_RUN), "node_id"].astype(int).tolist()
        received = r.loc[r["status"] == "received", "node_id"].astype(int).tolist()
        out.append((ran, received))
    return out


class PlainLoop:
    """The same local training, FedAvg, evaluation and activation probe, without Flower, SimPy or
    the meter, one round at a time; `evals` holds the (accuracy, loss) of the global model at
    rounds 0..R; `finish()` computes `divergences`, the activation divergence of rounds 1..R (as
    the simulator does when it writes its rows, after the last round); `probe_s` is the time
    spent probing and in `finish`."""

    def __init__(self, cfg: Config, task: FederatedTask):
        self.seed, self.task = cfg.seed, task
        self.objective = ClientObjective()  # FedAvg's train config asks for no extra loss terms
        self.eval_model = task.build_model()
        self.model = (
            task.build_model()
        )  # the clients' one model, its weights replaced per client (as the ClientApp does)
        self.global_sd = {k: v.detach().clone() for k, v in self.eval_model.state_dict().items()}
        loss, acc = evaluate_model(self.eval_model, task.data.x_test, task.data.y_test)
        self.evals = [(acc, loss)]
        # the activation probe, as the simulator's (`sim.federated.job._probe`): a model of its own,
        # its tensors (which its state dict's share) written in place, as `ModelRecords.load` does
        self.probe, self.probe_images = probe_model(task.build_model()), task.data.x_test[:PROBE_IMAGES]
        self.probe_state = list(self.probe.state_dict().values())
        assert list(self.probe.state_dict()) == list(self.model.state_dict())
        self.activations: list[list[np.ndarray]] = []  # per round, each aggregated client's
        self.divergences: list[float] = []
        self.probe_s = 0.0

    def round(self, rnd: int, ran: list[int], received: list[int]) -> None:
        task = self.task
        lr = task.lr * task.lr_decay ** (rnd - 1)
        results, activations = [], []
        for node in ran:
            idx = task.partitions[node - 1]
            with torch_seeded(
                int(stream(self.seed, "torch", rnd, node, "train").integers(2**62))
            ):  # as the back end seeds each job
                self.model.load_state_dict(self.global_sd)
                _train(task, self.model, idx, self.objective, lr)
            if node in received:
                sd = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
                results.append((sd, len(idx)))
                t0 = time.perf_counter()  # the simulator probes each received reply's weights
                for dst, src in zip(self.probe_state, sd.values()):
                    dst.copy_(src)
                activations.append(probe_activations(self.probe, self.probe_images))
                self.probe_s += time.perf_counter() - t0
        if results:  # Flower's aggregate_arrayrecords: sum of value * (n / total), in reply order
            total = float(sum(n for _, n in results))
            agg: dict[str, torch.Tensor] = {}
            for sd, n in results:
                w = n / total
                for k, v in sd.items():
                    agg[k] = v.detach() * w if k not in agg else agg[k].add_(v.detach() * w)
            self.global_sd = agg
        self.activations.append(activations)
        self.eval_model.load_state_dict(self.global_sd)
        loss, acc = evaluate_model(self.eval_model, task.data.x_test, task.data.y_test)
        self.evals.append((acc, loss))

    def finish(self) -> None:
        """The activation divergence of every round, as the simulator's rows (`sim.federated.report._costs`)."""
        t0 = time.perf_counter()
        self.divergences = [activation_divergence(np.stack(a)) if len(a) > 1 else math.nan for a in self.activations]
        self.probe_s += time.perf_counter() - t0


def plain_loop(cfg: Config, task: FederatedTask, schedule) -> PlainLoop:
    """The plain loop over a whole run's schedule, with the simulator's torch threads
    (`cfg.torch_threads`, as `simulate` runs everything)."""
    with torch_threads(cfg.torch_threads):
        loop = PlainLoop(cfg, task)
        for rnd, (ran, received) in enumerate(schedule, start=1):
            loop.round(rnd, ran, received)
        loop.finish()
    return loop


def _ran_and_received(rows) -> tuple[list[int], list[int]]:
    """(node ids whose training ran, node ids whose reply was aggregated) of one train phase."""
    rows = sorted(rows, key=lambda c: c.node_id)
    return ([c.node_id for c in rows if c.status not in NOT_RUN], [c.node_id for c in rows if c.status == "received"])


def interleaved(cfg: Config, job) -> tuple[float, float, list, object, PlainLoop]:
    """One simulator run with the plain loop's round r run right after the simulator's train
    phase of round r: the two paths alternate every ~0.3 s, so both meet the same machine speed
    (on a shared machine it drifts by tens of percent over seconds). Returns (simulator wall s,
    plain wall s, the schedule both ran (checked against the simulator's clients.csv), the
    simulator's result, the plain loop); the simulator's time is the run's wall time less the
    plain rounds inside it."""
    import sim.federated.job as runner

    task = job[3]
    plain_s = 0.0
    loop: PlainLoop | None = None
    schedule: list = []

    class Grid(runner.SimGrid):
        def send_and_receive(self, messages, *, timeout=None):
            nonlocal plain_s, loop
            replies = super().send_and_receive(messages, timeout=timeout)
            stats = self.phases[-1] if self.phases else None
            if stats is not None and stats.phase == "train" and len(schedule) < stats.round:
                t0 = time.perf_counter()
                if loop is None:  # round 0's evaluation, as the simulator's Strategy.start did first
                    loop = PlainLoop(cfg, task)
                ran, received = _ran_and_received(stats.clients)
                schedule.append((ran, received))
                loop.round(stats.round, ran, received)
                plain_s += time.perf_counter() - t0
            return replies

    runner.SimGrid, original = Grid, runner.SimGrid
    try:
        t0 = time.perf_counter()
        res = run_sim(cfg, job)
        total = time.perf_counter() - t0
    finally:
        runner.SimGrid = original
    t0 = time.perf_counter()  # the plain loop's divergences, after its last round as the simulator's rows
    loop.finish()
    plain_s += time.perf_counter() - t0
    if schedule != schedule_of(res.clients, cfg.workload.rounds):
        raise SystemExit("interleaved run: the plain loop's clients differ from the simulator's clients.csv")
    return total - plain_s, plain_s, schedule, res, loop


def timed(fn, *args):
    """(wall s, this process's CPU s, result). CPU time is the steadier figure when other
    processes compete for the cores (with one torch thread it is the work itself)."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args)
    return time.perf_counter() - t0, time.process_time() - c0, out


def busy_warning(threads: int) -> None:
    """Warn when the load average exceeds what this process's own torch threads explain."""
    try:
        one = os.getloadavg()[0]
    except OSError:
        return
    if one > threads + 0.5:
        print(
            f"warning: load average {one:.2f} > this benchmark's {threads} torch thread(s): other "
            "processes compete for the cores and the timings are noisy (with several torch threads each path "
            "slows down erratically, threads waiting on descheduled peers); rerun on a quiet machine"
        )


# --- profile --------------------------------------------------------------------------------
def _is_project_or_flwr(filename: str) -> bool:
    f = filename.replace("\\", "/")
    if "/site-packages/flwr/" in f:
        return True
    return f.startswith(str(ROOT)) and "/benchmarks/" not in f


def _where(filename: str) -> str:
    f = filename.replace("\\", "/")
    if "/site-packages/" in f:
        return f.split("/site-packages/", 1)[1]
    return os.path.relpath(f, ROOT) if f.startswith(str(ROOT)) else f


def _bucket(filename: str, func: str) -> str:
    f = filename.replace("\\", "/")
    if f.startswith(str(ROOT)):
        rel = os.path.relpath(f, ROOT)
        return rel.split("/", 1)[0] + "/" + rel.split("/")[-1] if "/" in rel else rel
    for name in ("flwr", "simpy", "pandas", "numpy", "torch", "google/protobuf", "tqdm", "omegaconf"):
        if f"/site-packages/{name}/" in f:
            return name
    if f.startswith("~") or f == "~":  # C builtins: attribute by name
        if "torch" in func:
            return "torch (C)"
        return "builtins (C)"
    return "python stdlib/other"


# Where the simulator's time goes beyond the plain loop's work: (label, [(path suffix, function[, "self"])]),
# cumulative times summed. Items may nest in one another (aggregation builds an ArrayRecord),
# so they are not additive; "both paths" rows are work the plain loop does too.
ITEMS = [
    (
        "FLOP/memory meter hooks (WorkMeter._pre/_post, _key, _measure)",
        [("sim/meter.py", "_pre"), ("sim/meter.py", "_post")],
    ),
    ("  of which FlopCounterMode measurements (_measure, cache misses)", [("sim/meter.py", "_measure")]),
    ("  of which _key (input + parameter shapes, every top-level call)", [("sim/meter.py", "_key")]),
    # self time only: `inner` runs the forward itself; its own time is the global hooks' dispatch,
    # which every submodule call pays while the meter's hooks are registered (zero in the plain loop)
    ("torch hooked-call slow path (module.py inner, self time)", [("torch/nn/modules/module.py", "inner", "self")]),
    ("ArrayRecord(...) construction: torch/numpy -> npy bytes", [("flwr/app/message/arrayrecord.py", "__init__")]),
    (
        "ArrayRecord.to_torch_state_dict: npy bytes -> torch",
        [("flwr/app/message/arrayrecord.py", "to_torch_state_dict")],
    ),
    ("Array.numpy (np.load of npy bytes, header via ast.literal_eval)", [("flwr/app/message/array.py", "numpy")]),
    (
        "FedAvg aggregate_train (Array.numpy per reply + sum)",
        [("flwr/serverapp/strategy/fedavg.py", "aggregate_train")],
    ),
    ("FedAvg configure_train (sampling, messages)", [("flwr/serverapp/strategy/fedavg.py", "configure_train")]),
    ("Flower Message construction", [("flwr/app/message/message.py", "__init__")]),
    ("channel: transfer (packets, ARQ draws)", [("channels/link.py", "transfer")]),
    (
        "channel: message_bytes + deliver (bit flips)",
        [("sim/federated/payload.py", "message_bytes"), ("sim/federated/payload.py", "deliver")],
    ),
    (
        "SimPy clock (sim.federated.timeline.Round, client)",
        [("sim/federated/timeline.py", "play"), ("sim/federated/timeline.py", "client")],
    ),
    ("seeded streams (sim.seeding.stream)", [("sim/seeding.py", "stream")]),
    ("torch.random.fork_rng", [("torch/random.py", "fork_rng")]),
    (
        "reports: _round_rows, frame (pandas), _summary",
        [("sim/federated/job.py", "_round_rows"), ("sim/report.py", "frame"), ("sim/federated/job.py", "_summary")],
    ),
    ("both paths: local training (_train)", [("experiments/federated/task.py", "_train")]),
    ("both paths: model build per client (build_model)", [("experiments/common/models.py", "build_model")]),
    ("both paths: server evaluation (evaluate_model)", [("experiments/federated/task.py", "evaluate_model")]),
    (
        "both paths: activation probe, loading the reply's weights included (sim.federated.job._probe)",
        [("sim/federated/job.py", "probe")],
    ),
    ("  of which the forward (probe_activations)", [("experiments/federated/task.py", "probe_activations")]),
    ("both paths: activation divergence (strategies.fedmax)", [("strategies/fedmax.py", "activation_divergence")]),
]


def _item_times(st: pstats.Stats) -> list[tuple[str, float, int]]:
    out = []
    for label, funcs in ITEMS:
        cum, calls = 0.0, 0
        for (filename, _line, func), (_cc, nc, tt, ct, _callers) in st.stats.items():
            f = filename.replace("\\", "/")
            for suffix, name, *mode in funcs:
                if f.endswith(suffix) and func == name:
                    cum += tt if mode == ["self"] else ct
                    calls += nc
        out.append((label, cum, calls))
    return out


def profile_sim(cfg: Config, job, top: int = 25) -> dict:
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    run_sim(cfg, job)
    prof.disable()
    wall = time.perf_counter() - t0
    st = pstats.Stats(prof, stream=io.StringIO())
    total = st.total_tt
    rows = []
    for (filename, line, func), (cc, nc, tt, ct, _callers) in st.stats.items():
        if _is_project_or_flwr(filename):
            rows.append((ct, tt, nc, f"{_where(filename)}:{line}({func})"))
    rows.sort(reverse=True)
    print(
        f"\ncProfile of one simulator run: {wall:.2f} s under the profiler "
        f"(profiled total {total:.2f} s); top {top} project/flwr functions by cumulative time"
    )
    print(f"{'cum s':>8} {'cum %':>6} {'self s':>8} {'calls':>8}  function")
    for ct, tt, nc, name in rows[:top]:
        print(f"{ct:8.3f} {100 * ct / total:5.1f}% {tt:8.3f} {nc:8d}  {name}")
    rounds = cfg.workload.rounds
    print("\nknown overhead items (cumulative, nested items overlap; under cProfile, so inflated):")
    print(f"{'cum s':>8} {'share':>6} {'ms/rnd':>7} {'calls':>7}  item")
    items = _item_times(st)
    for label, cum, calls in items:
        print(f"{cum:8.3f} {100 * cum / total:5.1f}% {1000 * cum / rounds:7.2f} {calls:7d}  {label}")
    # self time by where it is spent: torch's own work vs everything around it
    buckets: dict[str, float] = {}
    for (filename, _line, func), (_cc, _nc, tt, _ct, _callers) in st.stats.items():
        b = _bucket(filename, func)
        buckets[b] = buckets.get(b, 0.0) + tt
    print("\nself time by place (C builtins lumped; torch kernels show as builtins/methods):")
    for b, t in sorted(buckets.items(), key=lambda kv: -kv[1])[:15]:
        print(f"{t:8.3f} {100 * t / total:5.1f}%  {b}")
    return {
        "profiled_total_s": total,
        "items": {label: round(cum, 4) for label, cum, _ in items},
        "top": [
            {"cum_s": round(ct, 4), "self_s": round(tt, 4), "calls": nc, "function": n} for ct, tt, nc, n in rows[:top]
        ],
    }


# --- main -----------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--experiment", default="fedmax_noniid", help="conf/experiment/NAME.yaml (default: %(default)s)")
    ap.add_argument("--rounds", type=int, default=None, help="rounds (default: the experiment's)")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved runs (the figure; default: %(default)s)")
    ap.add_argument(
        "--alternating",
        type=int,
        default=2,
        help="whole sim and plain runs one after the other, for comparison (default: %(default)s)",
    )
    ap.add_argument("--warmup-rounds", type=int, default=2, help="rounds of the untimed warm-up of each path")
    ap.add_argument(
        "--threads", type=int, default=None, help="torch threads for both paths (default: the config's torch_threads)"
    )
    ap.add_argument("--profile", action="store_true", help="also profile one simulator run with cProfile")
    ap.add_argument("--top", type=int, default=25, help="functions listed by --profile")
    ap.add_argument("override", nargs="*", help="extra Hydra overrides, e.g. fleet=rpi channel.ber=1e-5")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    t_setup = time.perf_counter()
    extra = [*args.override, *([f"torch_threads={args.threads}"] if args.threads else [])]
    cfg = compose_config(args.experiment, args.rounds, extra)
    threads = cfg.torch_threads or torch.get_num_threads()  # what both paths run with
    job = prepare(cfg)  # data, partition, fleet, link, model check: one-time, untimed
    variants, fleet, _link, task = job
    assert len(variants) == 1 and variants[0].name == "fedavg", variants
    if task is None:
        print(
            "error: the experiment uses a user's ClientApp; the plain loop needs the built-in workload", file=sys.stderr
        )
        return 2
    rounds = cfg.workload.rounds
    w, d, s = cfg.workload, cfg.dataset, variants[0]
    print(
        f"workload: experiment={args.experiment} strategy={s.name} dataset={d.name} partition={d.partition} "
        f"model={w.model} devices={len(fleet)} fraction_train={s.fraction_train} rounds={rounds} "
        f"local_epochs={w.local_epochs} batch_size={w.batch_size} channel={cfg.channel.model}/{cfg.channel.mode} "
        f"ber={cfg.channel.ber} availability={cfg.fleet.availability}"
    )
    print(
        f"torch {torch.__version__}, threads={threads} (both paths), python {platform.python_version()}, "
        f"cpus={os.cpu_count()}"
    )

    # warm-up: both paths, a few rounds, untimed (first-use costs of flwr, torch, simpy, pandas)
    wcfg = with_rounds(cfg, min(args.warmup_rounds, rounds))
    warm = run_sim(wcfg, job)
    plain_loop(wcfg, task, schedule_of(warm.clients, wcfg.workload.rounds))
    print(f"set-up and warm-up: {time.perf_counter() - t_setup:.1f} s (untimed)")

    load_before = f"load average {load_note()}" if load_note() else ""
    if load_before:
        print(load_before)
        busy_warning(threads)
    # the figure held against the target: interleaved runs (the plain loop's round r right after
    # the simulator's round r, so both meet the same machine speed)
    inter: list[tuple[float, float]] = []
    probe_s: list[float] = []  # the plain loop's time in the activation probe, per interleaved run
    schedule, sim_evals, sim_div, loop = None, None, None, None
    for k in range(args.repeats):
        t_sim, t_plain, sched, res, loop = interleaved(cfg, job)
        inter.append((t_sim, t_plain))
        probe_s.append(loop.probe_s)
        if schedule is None:
            sim_evals = frame(res.rounds)[["accuracy", "loss"]].to_numpy()
            schedule, sim_div = sched, frame(res.rounds)["activation_divergence"].to_numpy()
        elif sched != schedule:
            raise SystemExit("the simulator sampled different clients in two runs of one seed: not comparable")
        print(
            f"interleaved {k + 1}/{args.repeats}: sim {t_sim:.3f} s, plain {t_plain:.3f} s, ratio {t_sim / t_plain:.3f}"
        )

    # for comparison: whole runs one after the other, in ABBA order (sim first on even repeats,
    # plain first on odd ones), each path's wall and CPU time
    sim_s, plain_s, sim_cpu, plain_cpu = [], [], [], []

    def sim_once() -> None:
        t, c, res = timed(run_sim, cfg, job)
        sim_s.append(t)
        sim_cpu.append(c)
        if schedule_of(res.clients, rounds) != schedule:
            raise SystemExit("the simulator sampled different clients in two runs of one seed: not comparable")

    def plain_once() -> None:
        t, c, _ = timed(plain_loop, cfg, task, schedule)
        plain_s.append(t)
        plain_cpu.append(c)

    for k in range(args.alternating):
        for step in (sim_once, plain_once) if k % 2 == 0 else (plain_once, sim_once):
            step()
        print(
            f"whole runs {k + 1}/{args.alternating} ({'sim, plain' if k % 2 == 0 else 'plain, sim'}): "
            f"sim {sim_s[-1]:.3f} s, plain {plain_s[-1]:.3f} s, ratio {sim_s[-1] / plain_s[-1]:.3f}"
        )

    # the same work: same clients, the same models (accuracies of rounds 1..R agree) and the same
    # activation divergences (NaN in the same rounds: fewer than 2 replies)
    ran = sum(len(r) for r, _ in schedule)
    received = sum(len(a) for _, a in schedule)
    plain_acc = np.array([a for a, _ in loop.evals[1:]])
    acc_diff = float(np.nanmax(np.abs(plain_acc - sim_evals[:, 0]))) if len(plain_acc) else 0.0
    plain_div = np.array(loop.divergences)
    div_nan_same = bool((np.isnan(plain_div) == np.isnan(sim_div)).all())
    div_diff = float(np.nanmax(np.abs(plain_div - sim_div))) if (~np.isnan(sim_div)).any() else 0.0
    same = acc_diff <= 0.01 and div_nan_same and div_diff <= 1e-6
    i_probe = statistics.median(probe_s)

    i_sim, i_plain = statistics.median(t for t, _ in inter), statistics.median(t for _, t in inter)
    ratio = statistics.median(a / b for a, b in inter)
    load_after = f"load average {load_note()}" if load_note() else ""
    print()
    print(
        f"{'method':<12} {'sim s':>8} {'plain s':>8} {'ratio':>7}  "
        f"(medians; sim per round {1000 * i_sim / rounds:.1f} ms)"
    )
    print(
        f"{'interleaved':<12} {i_sim:8.3f} {i_plain:8.3f} {ratio:7.3f}  runs: "
        + ", ".join(f"{a / b:.3f}" for a, b in inter)
        + f"; target <= {TARGET_RATIO}: "
        + ("met" if ratio <= TARGET_RATIO else "NOT met")
    )
    result_whole = {}
    if sim_s:
        w_ratio = statistics.median(sim_s) / statistics.median(plain_s)
        w_pairs = statistics.median(a / b for a, b in zip(sim_s, plain_s))
        w_cpu = statistics.median(sim_cpu) / statistics.median(plain_cpu)
        print(
            f"{'whole runs':<12} {statistics.median(sim_s):8.3f} {statistics.median(plain_s):8.3f} {w_ratio:7.3f}  "
            f"pairs: "
            + ", ".join(f"{a / b:.3f}" for a, b in zip(sim_s, plain_s))
            + f"; median of pairs {w_pairs:.3f}, of CPU times {w_cpu:.3f}"
        )
        result_whole = {
            "whole_sim_s": [round(t, 4) for t in sim_s],
            "whole_plain_s": [round(t, 4) for t in plain_s],
            "whole_sim_cpu_s": [round(t, 4) for t in sim_cpu],
            "whole_plain_cpu_s": [round(t, 4) for t in plain_cpu],
            "whole_ratio": round(w_ratio, 4),
            "whole_ratio_median_of_pairs": round(w_pairs, 4),
            "whole_ratio_cpu": round(w_cpu, 4),
        }
    print(
        f"{'':<12} overhead {1000 * (i_sim - i_plain) / rounds:.1f} ms/round, "
        f"{1000 * (i_sim - i_plain) / max(ran, 1):.2f} ms/client (interleaved medians); "
        f"the activation probe, in both paths: {1000 * i_probe / rounds:.1f} ms/round "
        f"({100 * i_probe / i_plain:.1f}% of the plain loop's time)"
    )
    print(
        f"work: {rounds} rounds, {ran} client trainings ran ({received} aggregated); "
        f"final accuracy sim {sim_evals[-1, 0]:.4f} plain {plain_acc[-1]:.4f} "
        f"(max |diff| over rounds {acc_diff:.2g}), activation divergences' max |diff| {div_diff:.2g}"
        f"{'' if div_nan_same else ', NaN in different rounds'}: {'same models' if same else 'MODELS DIFFER'}"
    )

    result = {
        "experiment": args.experiment,
        "strategy": s.name,
        "rounds": rounds,
        "repeats": args.repeats,
        "threads": threads,
        "clients_trained": ran,
        "clients_aggregated": received,
        "sim_s": [round(a, 4) for a, _ in inter],
        "plain_s": [round(b, 4) for _, b in inter],
        "sim_median_s": round(i_sim, 4),
        "plain_median_s": round(i_plain, 4),
        "ratio": round(ratio, 4),
        "ratio_runs": [round(a / b, 4) for a, b in inter],
        **result_whole,
        "target_ratio": TARGET_RATIO,
        "within_target": ratio <= TARGET_RATIO,
        "same_models": same,
        "max_accuracy_diff": acc_diff,
        "max_divergence_diff": div_diff,
        "plain_probe_s": [round(t, 4) for t in probe_s],
        "probe_ms_per_round": round(1000 * i_probe / rounds, 2),
        "load_before": load_before,
        "load_after": load_after,
    }
    if load_after:
        print(load_after)
        busy_warning(threads)
    if args.profile:
        prof = profile_sim(cfg, job, args.top)
        result["profiled_total_s"] = round(prof["profiled_total_s"], 4)
    finish(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())

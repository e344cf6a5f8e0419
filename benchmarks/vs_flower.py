"""edgesim against Flower's own simulation, end to end, on the same work, in one run.

    python benchmarks/vs_flower.py [--nodes 10,100,1000] [--sweep 1,4] [--rounds 10] [--repeats 1] [--json PATH]

The workload is `benchmarks/digits_fl.py` (MLP 64-64-10 on digits, FedAvg over half the nodes
per round, 5 full-batch SGD steps per client, server-side evaluation; one Flower
ServerApp/ClientApp pair). Each path is a fresh Python process timed from its start to its
exit (imports, start-up, the rounds, writing results: what a user waits for):

* `flower`: `flwr.simulation.run_simulation(server_app, client_app, num_supernodes=N)` with
  its Ray back end, one CPU per client (`client_resources.num_cpus=1`);
* `edgesim-local`: `python -m sim workload.app.server=benchmarks.digits_fl:server_app
  workload.app.client=benchmarks.digits_fl:client_app fleet.num_devices=N ... backend=local`,
  which also simulates the devices' compute time and energy and the radio links;
* `edgesim-processes`: the same with `backend=processes` (worker processes forked from the job's
  process, as many as the load average says cores are free, or `--processes N`);
* `edgesim-ray`: the same with `backend=ray` (a local Ray instance on all cores);
* `floor`: a process that only imports what the workload needs (torch, Flower's app modules)
  and builds one torch optimiser: what any run of this workload pays first, on either side; it
  imports with Python's cyclic collector paused, builds the optimiser with torch._dynamo
  deferred, and ends without the interpreter's teardown of torch's modules, as `python -m sim`
  does (~0.5 s, ~0.9 s and ~0.7 s that no process needs: `sim.collector`,
  `sim.torch_internals`, `sim.__main__._end_now`; Flower's process and its Ray workers pay all
  three, as a script that calls `run_simulation` does);
* `work`: the floor and the rounds' own work with no runtime at all: the same ClientApp called
  directly on Flower messages for the same clients a round, FedAvg's `aggregate_train` and the
  server's evaluation, one after another on one core (`--child-work`), on the arrays as
  Flower's messages hold them (edgesim's delivered records read faster: `sim.federated.payload.received`,
  so it can do a little less than this). On C cores at best the floor plus this work over C.

Two caps per case: the floor cap (Flower / floor: what the issue's target is held to) and the work
cap (Flower / (floor + the work past the floor spread over every core)): what no path could beat
on this machine even with perfect parallelism and a simulator that cost nothing.

Each size of `--nodes` is one case; `--sweep K` (K > 1, in the same list: `--sweep 1,4`) adds
the case of a sweep: it times a sweep of K such runs (seeds seed..seed+K-1) instead of one, each path in the
way its users sweep: Flower calls `run_simulation` K times in one Python process (imports paid
once, Ray started and stopped per run, as run_simulation does); edgesim runs one Hydra multirun,
`python -m sim -m seed=0,1,...` (`edgesim-local`: the basic launcher, jobs one after another in
one process; `edgesim-ray`: `hydra/launcher=edgesim_ray`, the jobs as parallel Ray tasks); the
floor is still one process's imports.

The paths run one after another, in rotating order over `--repeats`; the medians and the
ratios flower / edgesim are printed, end to end and for the rounds alone (the wall time of
`strategy.start` inside the ServerApp: no interpreter start, imports or Ray start-up, but the
first round's lazy imports, e.g. torch's optimiser importing torch._dynamo in Flower's workers, are in it), with the
final accuracy of each path (the same training
and sampling seed; Flower numbers its nodes at random, so the sampled partitions, and hence
the accuracies, can differ a little). The last line is `RESULT {json}`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import finish, load_note

TARGET = 5.0  # edgesim at least this many times faster than Flower's simulation, end to end
PATHS = ("flower", "edgesim-local", "edgesim-processes", "edgesim-ray", "floor", "work")
# what any process that runs this workload pays before its first round: importing torch and
# Flower's app modules, and the first torch optimiser; it imports with Python's cyclic collector
# paused, builds the optimiser without importing torch._dynamo and ends without the interpreter's
# teardown of those modules, as `python -m sim` does (`sim.collector`: ~0.5 s;
# `sim.torch_internals`: ~0.9 s; `sim.__main__._end_now`: ~0.7 s; none needed by any process), so
# that the floor stays a floor
FLOOR_CODE = (
    "import gc, json, os, sys; gc.disable(); import torch, flwr.app, flwr.serverapp, flwr.clientapp; "
    "from sim.torch_internals import defer_dynamo; defer_dynamo(); "
    "torch.optim.SGD([torch.zeros(1, requires_grad=True)]); "
    "f = open(sys.argv[1], 'w'); json.dump({'accuracy': {sys.argv[2]: float('nan')}, 'fl_s': 0.0}, f); f.close(); "
    "os._exit(0)"
)


def _env() -> dict:
    env = dict(
        os.environ,
        FLWR_TELEMETRY_ENABLED="0",
        PYTHONHASHSEED="0",
        MPLBACKEND="Agg",
        RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO="0",
    )
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    # as on a user's installation, every path's modules run from cached bytecode: pip compiles
    # site-packages when it installs, Python caches a source checkout's on its first import; a
    # shell with PYTHONDONTWRITEBYTECODE set (this development machine's) would make edgesim's and
    # the benchmark's own modules, and those alone, compile from source in every run (~0.1 s)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _command(
    path: str, nodes: int, rounds: int, seed: int, out: Path, sweep: int = 1, processes: int | None = None
) -> list[str]:
    result = out / "accuracy.json"
    if path == "floor":
        return [sys.executable, "-c", FLOOR_CODE, str(result), str(rounds)]
    if path in ("flower", "work"):
        return [
            sys.executable,
            str(Path(__file__).resolve()),
            f"--child-{path}",
            "--nodes",
            str(nodes),
            "--rounds",
            str(rounds),
            "--seed",
            str(seed),
            "--sweep",
            str(sweep),
            "--json",
            str(result),
        ]
    backend = path.split("-", 1)[1]
    sim = [sys.executable, "-m", "sim"]
    workload = [
        "workload.app.server=benchmarks.digits_fl:server_app",
        "workload.app.client=benchmarks.digits_fl:client_app",
        f"fleet.num_devices={nodes}",
        "fleet.availability=1.0",
        f"workload.rounds={rounds}",
        "progress=false",
        f"+workload.app.run_config.num-server-rounds={rounds}",
        "plots=false",
    ]
    if backend == "processes" and processes:
        workload.append(f"processes={processes}")
    if sweep == 1:
        return (
            sim
            + workload
            + [
                f"seed={seed}",
                f"+workload.app.run_config.seed={seed}",
                f"+workload.app.run_config.result-json={result}",
                f"backend={backend}",
                f"hydra.run.dir={out / 'run'}",
            ]
        )
    # one multirun over the seeds; each job's app writes its own accuracy file (the last seed's is read)
    seeds = ",".join(str(seed + k) for k in range(sweep))
    launcher = ["hydra/launcher=edgesim_ray"] if backend == "ray" else []
    return (
        sim
        + ["-m"]
        + workload
        + [
            f"seed={seeds}",
            "+workload.app.run_config.seed=${seed}",
            f"+workload.app.run_config.result-json={out}/accuracy_${{seed}}.json",
            f"hydra.sweep.dir={out / 'sweep'}",
        ]
        + launcher
    )


def run_path(path: str, nodes: int, rounds: int, seed: int, sweep: int = 1, processes: int | None = None) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"vs_flower_{path}_") as tmp:
        out = Path(tmp)
        t0 = time.perf_counter()
        proc = subprocess.run(
            _command(path, nodes, rounds, seed, out, sweep, processes),
            cwd=ROOT,
            env=_env(),
            text=True,
            capture_output=True,
        )
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"{path} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        if sweep > 1 and path.startswith("edgesim"):
            accuracies = sorted(out.glob("accuracy_*.json"))
            if len(accuracies) != sweep:
                raise SystemExit(f"{path}: {len(accuracies)} of {sweep} sweep jobs wrote their accuracy")
            info = {
                "path": path,
                "wall_s": wall,
                "jobs": sweep,
                "rounds_wall_s": sum(json.loads(a.read_text())["fl_s"] for a in accuracies),
                "final_accuracy": json.loads((out / f"accuracy_{seed + sweep - 1}.json").read_text())["accuracy"][
                    str(rounds)
                ],
            }
            info["comparison_rows"] = len((out / "sweep" / "comparison.csv").read_text().splitlines()) - 1
            return info
        result = json.loads((out / "accuracy.json").read_text())
        acc = result["accuracy"]
        info = {"path": path, "wall_s": wall, "rounds_wall_s": result["fl_s"], "final_accuracy": acc[str(rounds)]}
        clock = out / "run" / "wallclock.json"
        if clock.exists():
            w = json.loads(clock.read_text())
            info["backend_start_s"] = w["backend_start_s"]
            info["rounds_s"] = sum(w["wall_s_per_strategy"].values())
            summary = (out / "run" / "summary.csv").read_text().splitlines()
            row = dict(zip(summary[0].split(","), summary[1].split(",")))
            info["simulated_s"] = float(row["sim_time_s"])
            info["simulated_energy_j"] = float(row["active_energy_j"]) + float(row["idle_energy_j"])
        for line in proc.stdout.splitlines():
            if line.startswith("FLOWER "):
                info.update(json.loads(line[len("FLOWER ") :]))
        return info


# --- the Flower child process ------------------------------------------------------------------
def child_flower(nodes: int, rounds: int, seed: int, result_json: str, sweep: int = 1) -> None:
    import ray
    from flwr.server.superlink.fleet.vce.backend.raybackend import RayBackend
    from flwr.simulation import run_simulation

    sys.path.insert(0, str(ROOT))
    from benchmarks import digits_fl

    phases: dict[str, float] = {}

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                phases[name] = phases.get(name, 0.0) + time.perf_counter() - t

        return wrapper

    ray.init = timed("ray_init_s", ray.init)  # Flower starts Ray itself: time it, unchanged
    RayBackend.build = timed("actor_pool_build_s", RayBackend.build)
    t = time.perf_counter()
    fl_s = 0.0
    for k in range(sweep):  # a sweep: one run_simulation per seed, in this one process
        digits_fl.SETTINGS.update({"num-server-rounds": rounds, "seed": seed + k, "result-json": result_json})
        run_simulation(
            server_app=digits_fl.server_app,
            client_app=digits_fl.client_app,
            num_supernodes=nodes,
            backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}},
        )
        fl_s += json.loads(Path(result_json).read_text())["fl_s"]
    phases["run_simulation_s"] = time.perf_counter() - t
    if sweep > 1:  # the rounds of every run, in the result file the parent reads
        result = json.loads(Path(result_json).read_text())
        Path(result_json).write_text(json.dumps({**result, "fl_s": fl_s}))
    print("FLOWER " + json.dumps(phases), flush=True)


# --- the work child process: the rounds with no runtime --------------------------------------------
def child_work(nodes: int, rounds: int, seed: int, result_json: str, sweep: int = 1) -> None:
    """The rounds' own work, on one core: each round the ClientApp is called directly (a Flower
    message and context built here) for half the nodes, the replies averaged by examples as
    FedAvg does, and the server's evaluation run; the result file as the server app writes it
    (a sweep: the runs of seeds seed..seed+sweep-1 one after another, their rounds' times summed)."""
    import gc
    import random

    gc.disable()  # imported as edgesim does (`sim.collector`): the collector paused, then what lives frozen
    import torch

    sys.path.insert(0, str(ROOT))
    from sim.torch_internals import defer_dynamo

    defer_dynamo()  # and the optimisers train without importing the compiler, as in edgesim's job
    from benchmarks import digits_fl

    gc.freeze()
    gc.enable()
    torch.set_num_threads(1)
    fl_s, history = 0.0, {}
    for k in range(sweep):
        random.seed(seed + k)
        torch.manual_seed(seed + k)
        t0 = time.perf_counter()
        history = _work_rounds(digits_fl, nodes, rounds)
        fl_s += time.perf_counter() - t0
    Path(result_json).write_text(json.dumps({"accuracy": history, "fl_s": fl_s}))


def _work_rounds(digits_fl, nodes: int, rounds: int) -> dict[int, float]:
    import random

    from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
    from flwr.serverapp.strategy import FedAvg

    from experiments.federated.internals import set_task_identity

    set_task_identity((1, 0, 1))  # a Flower message reads its sender's run from the process (any runtime sets it)
    strategy = FedAvg(fraction_train=digits_fl.FRACTION_TRAIN, fraction_evaluate=0.0, min_available_nodes=2)
    arrays = ArrayRecord(digits_fl.net().state_dict())
    history = {}
    per_round = max(2, int(nodes * digits_fl.FRACTION_TRAIN))
    for rnd in range(1, rounds + 1):
        replies = []
        for node in random.sample(range(nodes), per_round):  # as FedAvg samples nodes 1..N, numbered in order
            msg = Message(
                content=RecordDict({"arrays": arrays, "config": ConfigRecord({"server-round": rnd})}),
                dst_node_id=node + 1,
                message_type="train",
            )
            config = {"partition-id": node}
            ctx = Context(run_id=1, node_id=node + 1, node_config=config, state=RecordDict(), run_config={})
            replies.append(digits_fl.client_app(msg, ctx))
        arrays, _ = strategy.aggregate_train(rnd, replies)  # the strategy's own weighted mean
        model = digits_fl.net()
        model.load_state_dict(arrays.to_torch_state_dict())
        history[rnd] = digits_fl.accuracy(model)
    return history


def run_case(paths: list[str], nodes: int, sweep: int, args) -> dict:
    """Every path at one size (`nodes`; a sweep of `sweep` runs), `args.repeats` times in rotating
    order; the medians, the ratios to Flower, and the best edgesim path."""
    repeats = args.repeats if nodes < 1000 else args.repeats_large
    print(
        f"\n== {nodes} nodes{f', a sweep of {sweep} runs (seeds)' if sweep > 1 else ', one run'}: "
        f"{repeats} repeat(s); load average before: {load_note()}",
        flush=True,
    )
    runs: dict[str, list[dict]] = {p: [] for p in paths}
    for k in range(repeats):
        order = paths[k % len(paths) :] + paths[: k % len(paths)]
        for p in order:
            info = run_path(p, nodes, args.rounds, args.seed, sweep, args.processes)
            runs[p].append(info)
            extra = ""
            if "backend_start_s" in info:
                extra = f" (back-end start {info['backend_start_s']:.1f} s, rounds {info['rounds_s']:.1f} s)"
            if "ray_init_s" in info:
                extra = f" (ray.init {info['ray_init_s']:.1f} s, run_simulation {info['run_simulation_s']:.1f} s)"
            print(
                f"  run {k + 1}: {p:<17} {info['wall_s']:7.2f} s{extra}, rounds alone {info['rounds_wall_s']:.2f} s, "
                f"final accuracy {info['final_accuracy']:.4f}",
                flush=True,
            )
    med = {p: statistics.median(r["wall_s"] for r in runs[p]) for p in paths}
    med_fl = {p: statistics.median(r["rounds_wall_s"] for r in runs[p]) for p in paths}
    print(
        f"{'path':<17} {'end to end s':>12} {'Flower / path':>13}   "
        f"{'rounds s':>8} {'Flower / path':>13}  final accuracy"
    )
    for p in paths:
        ratio = med["flower"] / med[p] if "flower" in med else float("nan")
        ratio_fl = med_fl["flower"] / med_fl[p] if "flower" in med_fl and p != "floor" else float("nan")
        print(
            f"{p:<17} {med[p]:12.2f} {ratio:13.2f}   {med_fl[p]:8.2f} {ratio_fl:13.2f}  "
            f"{runs[p][-1]['final_accuracy']:.4f}"
        )
    case = {"nodes": nodes, "sweep": sweep, "repeats": repeats, "median_wall_s": med, "median_rounds_wall_s": med_fl}
    case["runs"], case["load_after"] = runs, load_note()
    edgesim = [p for p in paths if p.startswith("edgesim")]
    if "flower" in med and edgesim:
        case["speedup_vs_flower"] = {p: med["flower"] / med[p] for p in paths if p not in ("flower", "work")}
        case["best_path"] = best = min(edgesim, key=lambda p: med[p])
        case["best_speedup"] = med["flower"] / med[best]
        # no path can beat a process that only imports and builds one optimiser: the cap
        cap = med["flower"] / med["floor"] if "floor" in med else float("inf")
        case["floor_cap"], case["target"] = cap, min(TARGET, cap)
        case["target_met"] = case["best_speedup"] >= case["target"]
        if "work" in med and "floor" in med:
            # the rounds' own work (past the floor) spread perfectly over every core, and nothing else
            cpus = os.cpu_count() or 1
            case["work_floor_s"] = med["floor"] + max(0.0, med["work"] - med["floor"]) / cpus
            case["work_cap"] = med["flower"] / case["work_floor_s"]
    return case


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", default="10", help="comma-separated sizes, each run in turn (e.g. 10,100,1000)")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=1, help="runs of each path, in rotating order")
    ap.add_argument("--repeats-large", type=int, default=1, help="the same at 1,000 nodes and more")
    ap.add_argument("--paths", default=",".join(PATHS), help="comma-separated subset of: " + ", ".join(PATHS))
    ap.add_argument(
        "--sweep", default="1", help="comma-separated: time a sweep of this many runs (seeds); 1: one run (at --nodes)"
    )
    ap.add_argument("--sweep-nodes", type=int, default=10, help="the nodes of the sweeps of more than one run")
    ap.add_argument(
        "--processes", type=int, default=None, help="edgesim-processes: its worker processes (default: the free cores)"
    )
    ap.add_argument("--json", default=None, help="also write the result here")
    ap.add_argument("--child-flower", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--child-work", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child_flower:
        child_flower(int(args.nodes), args.rounds, args.seed, args.json, int(args.sweep))
        return 0
    if args.child_work:
        child_work(int(args.nodes), args.rounds, args.seed, args.json, int(args.sweep))
        sys.stdout.flush()
        os._exit(0)  # as the floor: no teardown of torch's modules (the work is the rounds')
    paths = [p for p in args.paths.split(",") if p]
    for p in paths:
        if p not in PATHS:
            ap.error(f"--paths: unknown path {p!r}; allowed: {', '.join(PATHS)}")
    sweeps = [int(k) for k in args.sweep.split(",")]
    cases = [(int(n), 1) for n in args.nodes.split(",")] if 1 in sweeps else []
    cases += [(args.sweep_nodes, k) for k in sweeps if k > 1]
    print(
        f"workload: digits MLP 64-64-10, FedAvg, half the nodes per round, {args.rounds} rounds, "
        f"5 full-batch SGD steps per client; {os.cpu_count()} CPUs",
        flush=True,
    )
    results = [run_case(paths, nodes, sweep, args) for nodes, sweep in cases]
    print(
        f"\n{'case':<22} {'Flower s':>9} {'best edgesim path':>18} {'s':>7} {'x Flower':>9} {'floor cap':>9} "
        f"{'work cap':>9}  target"
    )
    for c in results:
        if "best_path" not in c:
            continue
        what = f"{c['nodes']} nodes" + (f", sweep of {c['sweep']}" if c["sweep"] > 1 else "")
        print(
            f"{what:<22} {c['median_wall_s']['flower']:9.2f} {c['best_path']:>18} "
            f"{c['median_wall_s'][c['best_path']]:7.2f} {c['best_speedup']:9.2f} {c['floor_cap']:9.2f} "
            f"{c.get('work_cap', float('nan')):9.2f}  "
            f">= {c['target']:.2f}x: {'met' if c['target_met'] else 'NOT met'}"
        )
    finish({"rounds": args.rounds, "target": TARGET, "cases": results}, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Rewrite the result tables of docs/nonn.md, docs/nair.md and docs/mcpipe.md from the CSVs of runs.

    python docs/make_results.py                                   # runs what is missing into outputs/docs-results
    python docs/make_results.py --from nonn=DIR --from nair=DIR   # reuse existing run folders
    python docs/make_results.py --check                           # exit 1 if a guide differs from its runs

Every figure a guide quotes from a run sits between `<!-- results:GUIDE:BLOCK -->` and
`<!-- /results -->` and is written here from the CSVs, never by hand. `RUNS` holds the exact
command behind each: `python -m sim ARGS` into a folder of its own (a sweep's jobs in numbered
subfolders). A block whose runs are missing is left as it is, and said so.
"""

from __future__ import annotations

import argparse
import math
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from devices import CATALOGUE

DOCS = Path(__file__).resolve().parent
NONN = {"nonn": 2, "nonn_4s": 4, "nonn_8s": 8}  # run -> students
NAIR_METHODS = {"original": "original", "clio_mt": "CLIO multi-tail", "clio_st": "CLIO single tail",
                "nair_neither": "NAIR, neither (ablation)", "nair_penalty": "NAIR, penalty only", "nair": "**NAIR**",
                "raw_quant": "raw, quantised", "raw_jpeg": "raw, JPEG"}
SCHEDULES = ("local", "data_parallel", "pipedream", "mcpipe", "greedy")
# run name -> the arguments of `python -m sim` (a sweep: -m)
RUNS = {
    "nonn": ["+experiment=nonn"], "nonn_4s": ["+experiment=nonn_4s"], "nonn_8s": ["+experiment=nonn_8s"],
    "nonn_seeds": ["-m", "+experiment=nonn", "seed=0,1,2"],
    "nair": ["+experiment=nair"], "nair_clio_sample": ["+experiment=nair", "workload.clio_training=sample"],
    "nair_sweep": ["-m", "+experiment=nair", "workload.split=3,5", "channel.bandwidth_bps=125000,250000",
                   "channel.ber=0,1e-5"],
    "mcpipe": ["+experiment=mcpipe"], "mcpipe_seeds": ["-m", "+experiment=mcpipe", "seed=0,1,2"],
}
BLOCKS: dict[str, dict[str, tuple[tuple[str, ...], Callable]]] = {"nonn": {}, "nair": {}, "mcpipe": {}}


def block(guide: str, name: str, *needs: str) -> Callable:
    """Register the function that writes block `name` of docs/GUIDE.md from runs `needs`."""
    def register(render: Callable) -> Callable:
        BLOCKS[guide][name] = (needs, render)
        return render
    return register


class Runs:
    """The run folders by name, and their CSVs."""

    def __init__(self, folders: dict[str, Path]):
        self.folders = folders

    def csv(self, run: str, name: str) -> pd.DataFrame:
        return pd.read_csv(self.folders[run] / name)

    def jobs(self, run: str) -> pd.DataFrame:
        """A sweep's summary.csv of every job, stacked in job order."""
        paths = sorted(self.folders[run].glob("*/summary.csv"), key=lambda p: int(p.parent.name))
        return pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)

    def summary(self, run: str) -> pd.Series:
        return self.csv(run, "summary.csv").iloc[0]  # a single job's one row


def table(header: list, rows: list[list]) -> str:
    return "\n".join(["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header),
                      *("| " + " | ".join(map(str, row)) + " |" for row in rows)])


# the cells' formats
pct = lambda x: f"{100 * x:.1f}%"
ms = lambda seconds, digits=1: f"{1e3 * seconds:.{digits}f} ms"
num = lambda x: f"{round(x):,}"


def mean_sd(values: pd.Series, fmt: str = ".3f") -> str:
    """Mean ± sample standard deviation (n - 1)."""
    return f"{values.mean():{fmt}} ± {values.std():{fmt}}"


def beta_name(b: float) -> str:
    return f"1e{int(math.log10(b))}" if math.log10(b).is_integer() else f"{b:g}"


# --- NoNN ------------------------------------------------------------------------------------
def _place(deployment: str, device: str) -> str:
    one, many = {"rpi3_400mhz": ("Pi", "Raspberry Pis"), "odroid_xu4": ("Odroid", "Odroids")}[device]
    if deployment.startswith("teacher"):
        return f"teacher (2.6 GFLOP) on one {one}"
    return f"{deployment} {many}" if deployment[-1].isdigit() else f"{deployment} on {many}"


@block("nonn", "calibration", "nonn")
def nonn_calibration(runs: Runs) -> str:
    cal, rows = runs.csv("nonn", "calibration.csv"), []
    for r in cal.itertuples():
        err = f"{r.latency_error_pct:+.1f}%" if abs(r.latency_error_pct) < 20 else f"{r.latency_error_pct:+.0f}%"
        if math.isnan(r.paper_compute_ms):
            sim, paper = f"{r.sim_compute_ms:.0f} / {r.sim_communication_ms:.0f}", f"{r.paper_latency_ms:,.0f} total"
        else:
            sim = f"{r.sim_compute_ms:.1f} / {r.sim_communication_ms:.1f}"
            paper = f"{r.paper_compute_ms:.2f} / {r.paper_communication_ms:.2f}"
        rows.append([_place(r.deployment, r.device), sim, paper, err])
    e = cal.iloc[0]
    return (table(["deployment", "simulated compute / communication (ms)", "paper (ms)", "latency error"], rows)
            + f"\n\nSimulated energy per node of NoNN-2S on Pis: {e.sim_energy_per_node_mj:.0f} mJ against the measured"
            f" {e.paper_energy_per_node_mj:.0f} mJ ({e.sim_energy_per_node_mj / e.paper_energy_per_node_mj - 1:+.0%}).")


@block("nonn", "partitioning", *NONN)
def nonn_partitioning(runs: Runs) -> str:
    rows = []
    for run, k in NONN.items():
        s = runs.summary(run)
        sizes = [int(v) for v in str(s.partition_sizes).split()]
        rows.append([k, s.communities, f"{s.modularity:.3f}", f"{s.p0_filters} of {s.p0_filters + sum(sizes)}",
                     f"{s.teacher_val_accuracy:.3f}", f"{s.p0_zeroed_val_accuracy:.3f}", ", ".join(map(str, sizes))])
    return table(["students", "communities", "modularity", "P0 (dropped) filters", "teacher validation accuracy",
                  "with P0 zeroed", "partition sizes"], rows)


@block("nonn", "accuracy", *NONN)
def nonn_accuracy(runs: Runs) -> str:
    models = ["teacher", "NoNN", "NoNN, KD only", "KD student", "ATKD student"]
    tables = {k: runs.csv(run, "comparison.csv").set_index("model") for run, k in NONN.items()}
    rows = [[f"{k} students", *(f"{t.loc[m, 'accuracy']:.3f}" for m in models)] for k, t in tables.items()]
    params = [[num(t.loc[m, "params_per_device"]) for t in tables.values()] for m in models]
    cells = [" / ".join(dict.fromkeys(p)) for p in params]
    for i, same_as in ((2, "NoNN"), (4, "KD")):
        cells[i] = f"same as {same_as}" if params[i] == params[i - 1] else cells[i]
    label = f"parameters per device ({' / '.join(f'{k}S' for k in tables)})"
    return table(["", *models], [*rows, [label, *cells]])


@block("nonn", "seeds", "nonn_seeds")
def nonn_seeds(runs: Runs) -> str:
    s = runs.jobs("nonn_seeds")
    cols = ["teacher", "nonn", "nonn_kd_only", "kd_student", "atkd_student"]
    return table([f"mean ± sd over seeds {', '.join(map(str, s.seed))}", "teacher", "NoNN", "NoNN, KD only",
                  "KD student", "ATKD student", "P0 filters", "change with P0 zeroed (validation points)"],
                 [[f"{s.num_students.iloc[0]} students", *(mean_sd(s[f"{c}_accuracy"]) for c in cols),
                   mean_sd(s.p0_filters, ".0f"), mean_sd(100 * s.delta_val_accuracy, ".1f")]])


@block("nonn", "beta", *NONN)
def nonn_beta(runs: Runs) -> str:
    rows, betas = [], []
    for run, k in NONN.items():
        b, s = runs.csv(run, "beta_search.csv"), runs.summary(run)
        betas = sorted(b.beta.unique())
        for model, picked in (("NoNN", s.nonn_beta), ("ATKD student", s.atkd_beta)):
            acc = b[b.model == model].set_index("beta").val_accuracy
            rows.append([k, model, *(f"{acc[v]:.3f}" for v in betas), beta_name(picked)])
    return table(["students", "model", *(f"beta {beta_name(v)}" for v in betas), "picked"], rows)


@block("nonn", "budgets", *NONN)
def nonn_budgets(runs: Runs) -> str:
    rows = []
    for run, k in NONN.items():
        st, cmp = runs.csv(run, "students.csv"), runs.csv(run, "comparison.csv").set_index("model")
        rows.append([k, num(st.params.max()), f"{num(st.memory_bytes.max())} / {num(st.memory_budget_bytes.iloc[0])}",
                     f"{st.flops.max() / 1e6:.2f} / {st.flop_budget.iloc[0] / 1e6:.2f}",
                     st.width_multiplier.iloc[0], num(cmp.loc["KD student", "total_params"])])
    return table(["students", "parameters (largest student)", "memory bytes (8-bit) / budget",
                  "MFLOP per image / budget", "width", "single KD / ATKD student parameters"], rows)


@block("nonn", "inference", *NONN)
def nonn_inference(runs: Runs) -> str:
    rows = [[f"{k} devices", ms(s.nonn_latency_s), ms(s.split_latency_s), f"{s.speedup_vs_split:.1f}x",
             ms(s.teacher_latency_s)] for s, k in ((runs.summary(run), k) for run, k in NONN.items())]
    inf = runs.csv("nonn", "inference.csv").set_index(["scenario", "method"]).compute_s
    student, teacher = inf["homogeneous rpi3_400mhz", "NoNN"], inf["teacher on one rpi3_400mhz", "teacher"]
    return (table(["", "NoNN", "split ATKD student", "speed-up", "teacher on one Pi"], rows)
            + f"\n\nOn a Pi a student computes in {ms(student)}, the whole teacher in {ms(teacher)}.")


@block("nonn", "heterogeneous", "nonn_8s")
def nonn_heterogeneous(runs: Runs) -> str:
    inf = runs.csv("nonn_8s", "inference.csv")
    het = inf[inf.scenario.str.startswith("odroid_xu4 runs") & (inf.method == "NoNN")]
    return table(["students on the Odroid (8 students)", *(s.rpartition(" ")[2] for s in het.scenario)],
                 [["latency", *(ms(v) for v in het.latency_s)],
                  ["energy per node", *(f"{1e3 * v:.0f} mJ" for v in het.energy_per_node_j)]])


@block("nonn", "robustness", "nonn_8s")
def nonn_robustness(runs: Runs) -> str:
    r = runs.csv("nonn_8s", "robustness.csv")
    min_max = ["" if n == 1 else f"{lo:.3f} / {hi:.3f}" for n, lo, hi in zip(r.subsets, r.accuracy_min, r.accuracy_max)]
    by = r.set_index("active_devices")
    return (table(["active devices", *r.active_devices],
                  [["mean accuracy", *(f"{v:.3f}" for v in r.accuracy_mean)], ["min / max", *min_max]])
            + f"\n\nThe best single student alone reaches {by.accuracy_max[1]:.3f} (the paper's: 82.8%); with four"
            f" devices active the mean is {by.accuracy_mean[4]:.3f} (the paper: above 93%).")


# --- NAIR ------------------------------------------------------------------------------------
# NAIR's columns accuracy_at_<budget>_s, and their headings
_budgets = lambda t: [c for c in t.columns if c.startswith("accuracy_at_")]
_budget_ms = lambda column: f"{1e3 * float(column.split('_')[2]):.0f} ms"


def _nair_table(t: pd.DataFrame, names: dict[str, str]) -> str:
    rows = [[names[r["method"]], *(pct(r[c]) for c in [*_budgets(t), "accuracy_overall"])]
            for _, r in t.iterrows() if r["method"] in names]
    return table(["method", *map(_budget_ms, _budgets(t)), "overall"], rows)


@block("nair", "table2", "nair")
def nair_table2(runs: Runs) -> str:
    lat = runs.csv("nair", "latency.csv")
    orig = lat[lat.method == "original"]
    units = ", ".join(f"{u:g}" for u in orig.mean_units_received)
    budgets = ", ".join(f"{1e3 * b:.0f}" for b in orig.latency_budget_s)
    slice_bytes = (orig.mean_bytes_received / orig.mean_units_received).iloc[0]
    return (f"Each slice is {slice_bytes:.0f} bytes; the budgets {budgets} ms let {units} of the"
            f" {len(runs.csv('nair', 'importance.csv'))} slices arrive.\n\n"
            + _nair_table(runs.csv("nair", "table2.csv"), NAIR_METHODS))


@block("nair", "figures", "nair")
def nair_figures(runs: Runs) -> str:
    t, imp, abl = (runs.csv("nair", f) for f in ("table2.csv", "importance.csv", "ablation.csv"))
    t, low = t.set_index("method"), _budgets(t)[0]
    o, c, r = (runs.csv("nair", "cost.csv").set_index("method").loc[m] for m in ("nair", "clio_mt", "raw_quant"))
    both = lambda col, fmt: " / ".join(fmt(t.loc[m, col]) for m in ("original", "nair"))
    shares = " / ".join(pct(imp[f"share_{m}"].max()) for m in ("original", "nair", "nair_penalty", "nair_neither"))
    m7_s = o.head_flops / CATALOGUE["cortex_m7_512kb"].flops_per_s
    rows = [["original / NAIR at the smallest budget", both(low, pct), "16.0% / 91.5%"],
            ["overall accuracy, original / NAIR", both("accuracy_overall", pct), "93.79% / 93.95%"],
            ["tail parameters, NAIR / CLIO multi-tail", f"{num(o.tail_params)} / {num(c.tail_params)}"
             f" ({c.num_tails:.0f} tails): {o.tail_params / c.tail_params:.1%}", "3.1M / 36.2M: 8.6%"],
            ["the top unit's share of importance: original / NAIR / penalty only / neither", shares, "9% / 21.6%"],
            ["table III, neither / penalty only / both: smallest budget; overall",
             "; ".join(" / ".join(pct(v) for v in abl[col]) for col in ("low_latency_accuracy", "overall_accuracy")),
             "77% / 89% / 91.5% at the lowest latency"],
            ["the head on the device: FLOPs, time, energy", f"{num(o.head_flops)}, {ms(o.head_compute_s, 2)},"
             f" {1e3 * o.head_energy_j:.2f} mJ (on a Cortex-M7: {ms(m7_s)})", ""],
            ["all slices (NAIR) / the raw image: link time, radio energy", f"{ms(o.transfer_s)},"
             f" {o.transfer_energy_j:.3f} J / {ms(r.transfer_s)}, {1e3 * r.transfer_energy_j:.1f} mJ", ""]]
    return table(["figure", "this run", "paper"], rows)


@block("nair", "corruption", "nair")
def nair_corruption(runs: Runs) -> str:
    cor = runs.csv("nair", "corruption.csv")
    c = cor.pivot_table(index="corruption_fraction", columns="split", values="accuracy")
    layers = cor.drop_duplicates("split").set_index("split").layer
    return table(["elements erased", *(layers[s] for s in c.columns)],
                 [[f"{100 * f:g}%", *(pct(v) for v in row)] for f, row in zip(c.index, c.values)])


@block("nair", "clio_sample", "nair", "nair_clio_sample")
def nair_clio_sample(runs: Runs) -> str:
    t, default = runs.csv("nair_clio_sample", "table2.csv"), runs.csv("nair", "table2.csv").set_index("method")
    low, st = _budgets(t)[0], t.set_index("method").loc["clio_st"]
    names = {"clio_mt": "CLIO multi-tail (sampled widths)", "clio_st": "CLIO single tail (sampled widths)"}
    return (_nair_table(t, names)
            + f"\n\nCLIO single tail: {pct(st[low])} at the smallest budget and {pct(st.accuracy_overall)} overall,"
            f" against the original model's {pct(default.loc['original', 'accuracy_overall'])} (the paper's CLIO-st:"
            f" 43.2% / 22.8%; 91.5% vs 93.8%). NAIR at {pct(default.loc['nair', low])} /"
            f" {pct(default.loc['nair', 'accuracy_overall'])} overall is {default.loc['nair', low] / st[low]:.1f} times"
            " CLIO-st's accuracy at the smallest budget (the paper: 2.1 times, \"112% better\").")


@block("nair", "sweep", "nair_sweep")
def nair_sweep(runs: Runs) -> str:
    s = runs.jobs("nair_sweep").set_index("method")
    low, high = _budgets(s)[0], _budgets(s)[-1]
    cols = [("original", low), ("original", high), ("nair", low), ("nair", high), ("clio_mt", low), ("clio_mt", high),
            ("raw_jpeg", low), ("nair", "accuracy_overall")]
    rows = [[split, f"{bps / 1e3:g}", f"{ber:g}", *(pct(job.loc[m, c]) for m, c in cols)]
            for (split, bps, ber), job in s.groupby(["split", "bandwidth_bps", "channel_ber"])]
    names = {"original": "original", "nair": "NAIR", "clio_mt": "CLIO-mt", "raw_jpeg": "raw JPEG"}
    mt, nair = (s[s.split == s.split.max()].loc[m].iloc[0] for m in ("clio_mt", "nair"))
    jpeg = s.loc["raw_jpeg"].sort_values("channel_ber").groupby(["split", "bandwidth_bps"])[low]
    jpeg_drop = 100 * (jpeg.first() - jpeg.last()).max()  # the lowest BER against the highest
    return (table(["split", "rate (kbit/s)", "BER", *(f"{names[m]} {_budget_ms(c)}" for m, c in cols[:-1]),
                   "NAIR overall"], rows)
            + f"\n\nAt split {mt.split} the multi-tail CLIO has {mt.num_tails:.0f} tails ({num(mt.tail_params)}"
            f" parameters against NAIR's {num(nair.tail_params)}). BER {s.channel_ber.max():g} costs the raw image's"
            f" JPEG up to {jpeg_drop:.1f} points at {_budget_ms(low)}.")


# --- mcPipe ----------------------------------------------------------------------------------
def _by_schedule(s: pd.DataFrame, cell: Callable[[pd.DataFrame], str]) -> list[list]:
    """One row per (model, N) in the run's order, one cell per schedule from its rows."""
    return [[model, n, *(cell(g[g.schedule == sch]) for sch in SCHEDULES)]
            for (model, n), g in s.groupby(["model", "workers"], sort=False)]


@block("mcpipe", "accuracy", "mcpipe")
def mcpipe_accuracy(runs: Runs) -> str:
    s = runs.csv("mcpipe", "summary.csv")
    reached = lambda t: "not reached" if math.isnan(t) else f"{t:.1f}"
    cell = lambda g: f"{g.accuracy_at_time.iloc[0]:.3f} / {reached(g.time_to_target_s.iloc[0])}"
    updates = "; ".join(f"{m}, N = {n}: " + ", ".join(f"{sch} {u}" for sch, u in zip(g.schedule, g.updates))
                        for (m, n), g in s[s.workers == 2].groupby(["model", "workers"], sort=False))
    return (table(["model", "N", *SCHEDULES], _by_schedule(s, cell))
            + f"\n\nUpdates in the {s.sim_time_s.iloc[0]:g} s: {updates}.")


@block("mcpipe", "seeds", "mcpipe_seeds")
def mcpipe_seeds(runs: Runs) -> str:
    def cell(g: pd.DataFrame) -> str:
        reached = g.time_to_target_s.dropna()
        time = f"{reached.mean():.2f} s ({len(reached)}/{len(g)})" if len(reached) else "not reached"
        return f"{mean_sd(g.accuracy_at_time)} / {time}"
    return table(["model", "N", *SCHEDULES], _by_schedule(runs.jobs("mcpipe_seeds"), cell))


@block("mcpipe", "memory", "mcpipe")
def mcpipe_memory(runs: Runs) -> str:
    m = runs.csv("mcpipe", "memory.csv")
    pipe, mc = (m[m.schedule == sch].set_index(["model", "workers", "worker"]) for sch in ("pipedream", "mcpipe"))
    rows = [[*key, num(p.params_bytes), p.max_weight_versions, num(p.peak_state_bytes), num(p.theorem1_bytes),
             *(num(mc.loc[key, c]) for c in ("peak_state_bytes", "peak_working_bytes", "theorem1_bytes")),
             num(p.peak_total_bytes), num(mc.loc[key, "peak_total_bytes"])] for key, p in pipe.sort_index().iterrows()]
    return table(["model", "N", "worker", "stage params", "PipeDream versions", "PipeDream state", "m·Ω/N",
                  "mcPipe state", "mcPipe working", "Ω/N+2(m−1)b√(Ω/N)", "PipeDream total", "mcPipe total"], rows)


# --- rewriting the guides --------------------------------------------------------------------
MARKED = re.compile(r"(<!-- results:(\w+):(\w+) -->\n)(.*?)(<!-- /results -->)", re.S)


def rewrite(text: str, guide: str, runs: Runs) -> tuple[str, list[str]]:
    """`text` with every block of `guide` whose runs are at hand rewritten; and the blocks left as they were."""
    skipped = []

    def rewrite_block(match: re.Match) -> str:
        if match[2] != guide or match[3] not in BLOCKS[guide]:
            raise SystemExit(f"docs/{guide}.md: no block {match[2]}:{match[3]} (known: {', '.join(BLOCKS[guide])})")
        needs, render = BLOCKS[guide][match[3]]
        missing = [r for r in needs if r not in runs.folders]
        if missing:
            skipped.append(f"{guide}:{match[3]} (needs {', '.join(missing)})")
            return match[0]
        paragraphs = [p if p.startswith("|") else textwrap.fill(p, 100) for p in render(runs).strip().split("\n\n")]
        return match[1] + "\n\n".join(paragraphs) + "\n" + match[5]
    return MARKED.sub(rewrite_block, text), skipped


def run_folder(name: str, out: Path, execute: bool) -> Path | None:
    """The folder of run `name` under `out`: there already, or run now (`python -m sim`) if `execute`."""
    folder = out / name
    if any(folder.glob("*.csv")) or any(folder.glob("*/summary.csv")):
        return folder
    if not execute:
        return None
    print(f"running: python -m sim {' '.join(RUNS[name])}", flush=True)
    subprocess.run([sys.executable, "-m", "sim", *RUNS[name], "progress=false", "plots=false",
                    f"cache_dir={out / '.cache'}", f"hydra.run.dir={folder}", f"hydra.sweep.dir={folder}"], check=True)
    return folder


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/docs-results"), help="where the runs go")
    parser.add_argument("--from", dest="given", action="append", default=[], metavar="NAME=DIR",
                        help=f"reuse this folder as run NAME ({', '.join(RUNS)})")
    parser.add_argument("--only", nargs="+", default=list(BLOCKS), choices=list(BLOCKS), help="the guides to rewrite")
    parser.add_argument("--no-run", action="store_true", help="run nothing: rewrite what the runs at hand allow")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a guide would change")
    args = parser.parse_args()
    given = dict(g.split("=", 1) for g in args.given)
    if set(given) - set(RUNS):
        parser.error(f"--from: unknown run {', '.join(sorted(set(given) - set(RUNS)))}; allowed: {', '.join(RUNS)}")
    needed = dict.fromkeys(r for g in args.only for needs, _ in BLOCKS[g].values() for r in needs)
    folders = {n: Path(given[n]) if n in given else run_folder(n, args.out.resolve(), not args.no_run) for n in needed}
    runs, changed, skipped = Runs({n: f for n, f in folders.items() if f is not None}), [], []
    for guide in args.only:
        path = DOCS / f"{guide}.md"
        old = path.read_text()
        new, left = rewrite(old, guide, runs)
        skipped += left
        if new != old:
            changed.append(path.name)
            if not args.check:
                path.write_text(new)
    print("".join(f"left as it is: {s}\n" for s in skipped) + f"{'stale' if args.check else 'rewritten'}: "
          + (", ".join(changed) or "none"))
    return 1 if args.check and (changed or skipped) else 0  # a block left unchecked is not known to be fresh


if __name__ == "__main__":
    sys.exit(main())

"""Rewrite the result tables of docs/nonn.md, nair.md, mcpipe.md, dream.md and fedmax.md from the CSVs of runs.

    python docs/make_results.py                                   # runs what is missing into outputs/docs-results
    python docs/make_results.py --from nonn=DIR --from nair=DIR   # reuse existing run folders
    python docs/make_results.py --check                           # exit 1 if a guide differs from its runs
    python docs/make_results.py --only nonn:claims fedmax         # one block of a guide, or whole guides

Every figure a guide quotes from a run sits between `<!-- results:GUIDE:BLOCK -->` and
`<!-- /results -->` and is written here from the CSVs, never by hand. `RUNS` holds the exact
command behind each: `python -m sim ARGS` into a folder of its own (a sweep's jobs in numbered
subfolders). A block whose runs are missing is left as it is, and said so.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import textwrap
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS))  # the table writers beside this script

import results_dream  # noqa: F401  (each registers its guide's blocks)
import results_fedmax  # noqa: F401
import results_mcpipe  # noqa: F401
import results_nair  # noqa: F401
import results_nonn  # noqa: F401
from results_common import BLOCKS, Runs

# the claim tables' workloads on mnist5k, each scaled down from its experiment's defaults
MNIST5K = {
    "nonn": [
        "+experiment=nonn",
        "workload.teacher_width=2",
        "workload.teacher_epochs=4",
        "workload.student_epochs=5",
        "workload.beta_search=[]",
        "workload.at_beta_search=[]",
    ],
    "nair": ["+experiment=nair", "workload.epochs=8", "workload.retune_epochs=2", "workload.corruption_rates=[0.01]"],
    "mcpipe": [
        "+experiment=mcpipe",
        "workload.workers=[2]",
        "workload.sim_time_s=24",
        "workload.eval_every_s=4",
        "workload.accuracy_at_s=8",
    ],
    "fedmax": ["+experiment=fedmax_noniid", "workload.rounds=25"],
    "dream": [
        "+experiment=dream",
        "workload.teacher_width=2",
        "workload.teacher_epochs=4",
        "workload.images=400",
        "workload.student_widths=[0.5,2.0]",
        "workload.student_epochs=5",
    ],
}

# the workloads run over fewer than five seeds (none now; a guide says so where one is)
MNIST5K_SEEDS: dict[str, str] = {}

# run name -> the arguments of `python -m sim` (a sweep: -m)
RUNS = {
    "nonn": ["+experiment=nonn"],
    "nonn_4s": ["+experiment=nonn_4s"],
    "nonn_8s": ["+experiment=nonn_8s"],
    "nonn_seeds": ["-m", "+experiment=nonn", "seed=0,1,2"],
    "nair": ["+experiment=nair"],
    "nair_seeds": ["-m", "+experiment=nair", "seed=1,2"],
    "nair_clio_sum": ["+experiment=nair", "workload.clio_training=sum"],
    "nair_8bit": ["+experiment=nair", "workload.bits_per_element=8"],
    "nair_erase": [
        "+experiment=nair",
        "workload.corruption_mode=erase",
        "workload.corruption_rates=[0.01,0.05,0.1,0.2,0.3,0.4,0.5]",
    ],
    "nair_sweep": [
        "-m",
        "+experiment=nair",
        "workload.split=3,5",
        "channel.bandwidth_bps=125000,250000",
        "channel.ber=0,1e-5",
    ],
    "mcpipe": ["+experiment=mcpipe"],
    "mcpipe_seeds": ["-m", "+experiment=mcpipe", "seed=0,1,2"],
    "mcpipe_theorem": ["+experiment=mcpipe_theorem"],
    **{
        f"mcpipe_greedy{suffix}": [
            "-m",
            "+experiment=mcpipe",
            "workload.models=[vgg]",
            "workload.workers=[2]",
            "workload.schedules=[pipedream,greedy]",
            *sweep,
            "seed=0,1,2",
            "workload.sim_time_s=8",
        ]
        for suffix, sweep in {
            "": ["workload.depth=2,4,8"],
            "_lr": ["workload.depth=4", "workload.lr=0.1,0.15"],
        }.items()
    },
    "dream_seeds": ["-m", "+experiment=dream", "seed=0,1,2"],
    "nonn_dream_seeds": ["-m", "+experiment=nonn", "workload.data=dream", "seed=0,1,2"],
    **{
        f"dream_prior_{name}": [
            "+experiment=dream",
            *priors,
            "workload.sources=[dream]",
            "workload.student_widths=[0.5,1.0]",
        ]
        for name, priors in {
            "none": ["workload.tv_weight=0", "workload.l2_weight=0", "workload.jitter=0"],
            "tv": ["workload.tv_weight=0.01", "workload.l2_weight=0", "workload.jitter=0"],
            "tv_l2": ["workload.tv_weight=0.01", "workload.l2_weight=0.001", "workload.jitter=0"],
            "tv_l2_jitter": ["workload.tv_weight=0.01", "workload.l2_weight=0.001", "workload.jitter=1"],
        }.items()
    },
    # the claim tables (issue 17): seeds 0-4 (fewer where MNIST5K_SEEDS says) on 5,000 real 28x28 MNIST
    # images, scaled to fit about 90 minutes of 2 shared cores (each guide's claims section says what
    # was scaled and what it changes)
    **{
        f"{name}_mnist5k_seeds": [
            "-m",
            *args,
            "dataset=mnist5k",
            "torch_threads=1",
            f"seed={MNIST5K_SEEDS.get(name, '0,1,2,3,4')}",
        ]
        for name, args in MNIST5K.items()
    },
}

# --- rewriting the guides --------------------------------------------------------------------
MARKED = re.compile(r"(<!-- results:(\w+):(\w+) -->\n)(.*?)(<!-- /results -->)", re.S)


def rewrite(text: str, guide: str, runs: Runs, blocks: set[str]) -> tuple[str, list[str]]:
    """`text` with every one of `blocks` whose runs are at hand rewritten; and the blocks left as they were."""
    skipped = []

    def rewrite_block(match: re.Match) -> str:
        if match[2] != guide or match[3] not in BLOCKS[guide]:
            raise SystemExit(f"docs/{guide}.md: no block {match[2]}:{match[3]} (known: {', '.join(BLOCKS[guide])})")
        if match[3] not in blocks:
            return match[0]  # not asked for (--only GUIDE:BLOCK)
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
    if any(folder.glob("*.csv")) or any(folder.glob("*/summary.csv")) or any(folder.glob("*/*/summary.csv")):
        return folder
    if not execute:
        return None
    print(f"running: python -m sim {' '.join(RUNS[name])}", flush=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "sim",
            *RUNS[name],
            "progress=false",
            "plots=false",
            f"cache_dir={out / '.cache'}",
            f"hydra.run.dir={folder}",
            f"hydra.sweep.dir={folder}",
        ],
        check=True,
    )
    return folder


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/docs-results"), help="where the runs go")
    parser.add_argument(
        "--from",
        dest="given",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help=f"reuse this folder as run NAME ({', '.join(RUNS)})",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        default=list(BLOCKS),
        choices=[*BLOCKS, *(f"{g}:{b}" for g in BLOCKS for b in BLOCKS[g])],
        metavar="GUIDE[:BLOCK]",
        help=f"the guides (or single blocks) to rewrite: {', '.join(BLOCKS)}",
    )
    parser.add_argument("--no-run", action="store_true", help="run nothing: rewrite what the runs at hand allow")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a guide would change")
    args = parser.parse_args()
    given = dict(g.split("=", 1) for g in args.given)
    if set(given) - set(RUNS):
        parser.error(f"--from: unknown run {', '.join(sorted(set(given) - set(RUNS)))}; allowed: {', '.join(RUNS)}")
    only: dict[str, set[str]] = {}
    for item in args.only:
        guide, _, name = item.partition(":")
        only.setdefault(guide, set()).update([name] if name else BLOCKS[guide])
    needed = dict.fromkeys(r for g, names in only.items() for b in sorted(names) for r in BLOCKS[g][b][0])
    folders = {n: Path(given[n]) if n in given else run_folder(n, args.out.resolve(), not args.no_run) for n in needed}
    runs, changed, skipped = Runs({n: f for n, f in folders.items() if f is not None}), [], []
    for guide, names in only.items():
        path = DOCS / f"{guide}.md"
        old = path.read_text()
        new, left = rewrite(old, guide, runs, names)
        skipped += left
        if new != old:
            changed.append(path.name)
            if not args.check:
                path.write_text(new)
    print(
        "".join(f"left as it is: {s}\n" for s in skipped)
        + f"{'stale' if args.check else 'rewritten'}: "
        + (", ".join(changed) or "none")
    )
    return 1 if args.check and (changed or skipped) else 0  # a block left unchecked is not known to be fresh


if __name__ == "__main__":
    sys.exit(main())

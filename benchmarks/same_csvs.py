"""Byte-identity of every experiment's CSVs across a change: record them before, record after, compare.

    python benchmarks/same_csvs.py record DIR [--only NAME ...]   # runs every experiment into DIR
    python benchmarks/same_csvs.py compare DIR_A DIR_B            # exit 1 if any CSV differs

Each experiment runs as a user would (`python -m sim +experiment=NAME`), with its own model cache
under DIR (so nothing cached by an earlier version is reused), plots and progress bars off (they
write no CSV). Two chains run side by side, one process each: the NoNN runs share a teacher, so
they run one after another.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# name -> the overrides of `python -m sim`; two chains of roughly equal length
RUNS = {
    "fedmax_noniid": ["+experiment=fedmax_noniid"],
    "fedmax_iid": ["+experiment=fedmax_iid"],
    "nonn": ["+experiment=nonn"],
    "nonn_4s": ["+experiment=nonn_4s"],
    "nonn_8s": ["+experiment=nonn_8s"],
    "nair": ["+experiment=nair"],
    "mcpipe": ["+experiment=mcpipe"],
    "mcpipe_theorem": ["+experiment=mcpipe_theorem"],
    "sweep": ["-m", "+experiment=fedmax_noniid", "channel.ber=0,1e-4"],
}
CHAINS = (["nonn", "nonn_4s", "nonn_8s", "mcpipe_theorem"], ["fedmax_noniid", "fedmax_iid", "sweep", "nair", "mcpipe"])


def run_one(name: str, out: Path) -> str:
    folder = out / name
    args = [
        *RUNS[name],
        "progress=false",
        "plots=false",
        f"cache_dir={out / '.cache'}",
        f"hydra.run.dir={folder}",
        f"hydra.sweep.dir={folder}",
    ]
    env = {**os.environ, "PYTHONHASHSEED": "0", "MPLBACKEND": "Agg"}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "sim", *args], capture_output=True, text=True, env=env)
    (out / f"{name}.log").write_text(proc.stdout + proc.stderr)
    status = "ok" if proc.returncode == 0 else f"FAILED (exit {proc.returncode}, see {name}.log)"
    return f"{name}: {status} in {time.perf_counter() - t0:.0f} s"


def record(out: Path, only: list[str]) -> int:
    out.mkdir(parents=True, exist_ok=True)
    chains = [[n for n in chain if not only or n in only] for chain in CHAINS]

    def chain(names: list[str]) -> list[str]:
        lines = []
        for n in names:
            lines.append(run_one(n, out))
            print(lines[-1], flush=True)
        return lines

    with ThreadPoolExecutor(len(chains)) as pool:
        lines = [line for done in pool.map(chain, chains) for line in done]
    return 0 if all(": ok" in line for line in lines) else 1


def csvs(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*.csv") if ".cache" not in p.parts}


def compare(a: Path, b: Path) -> int:
    left, right = csvs(a), csvs(b)
    differ = sorted(f for f in left & right if not filecmp.cmp(a / f, b / f, shallow=False))
    for f in sorted(left - right):
        print(f"only in {a}: {f}")
    for f in sorted(right - left):
        print(f"only in {b}: {f}")
    for f in differ:
        print(f"differs: {f}")
    same = len(left & right) - len(differ)
    print(f"{same} of {len(left | right)} CSVs byte-identical")
    return 0 if same == len(left | right) and left else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    rec = sub.add_parser("record")
    rec.add_argument("dir", type=Path)
    rec.add_argument("--only", nargs="*", default=[], choices=sorted(RUNS))
    cmp_ = sub.add_parser("compare")
    cmp_.add_argument("a", type=Path)
    cmp_.add_argument("b", type=Path)
    args = parser.parse_args()
    if args.cmd == "record":
        return record(args.dir.resolve(), args.only)
    return compare(args.a, args.b)


if __name__ == "__main__":
    sys.exit(main())

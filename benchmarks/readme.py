"""Write the README's table of edgesim against Flower's simulation from `benchmarks/results.json`.

    python benchmarks/readme.py [--results benchmarks/results.json] [--check]

The table sits between `<!-- speed:vs_flower -->` and `<!-- /speed -->` in README.md and is
written here from the `vs_flower` entry that `run_all.py` (or `vs_flower.py --json`) left, never
by hand: every case (size, or sweep) with each path's median wall time, the best edgesim path,
its speed-up, the caps the floor and the work set and whether the target was met. `--check` exits 1 when the
README's table differs from the results.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
README = HERE.parent / "README.md"
BLOCK = re.compile(r"(<!-- speed:vs_flower -->\n)(.*?)(<!-- /speed -->)", re.S)
PATHS = ("flower", "edgesim-local", "edgesim-processes", "edgesim-ray", "floor", "work")


def _case_name(case: dict) -> str:
    return f"{case['nodes']:,} nodes" + (f", sweep of {case['sweep']}" if case["sweep"] > 1 else "")


def table(entry: dict) -> str:
    """The markdown table of one `vs_flower` result (as run_all stores it: command, load, result)."""
    result = entry["result"]
    cases = result["cases"]
    started = entry["started_utc"][:16].replace("T", " ")
    lines = [
        f"`{entry['command']}` ({started} UTC, load average {entry['load_before']} before, "
        f"{entry['load_after']} after; {result['rounds']} rounds; medians of each case's repeats, wall "
        "seconds from process start to exit):",
        "",
        "| case | repeats | " + " | ".join(PATHS) + " | best edgesim path | x Flower | floor cap | work cap | target |",
        "|---|---|" + "---|" * len(PATHS) + "---|---|---|---|---|",
    ]
    for c in cases:
        med = c["median_wall_s"]
        cells = [f"{med[p]:.1f}" if p in med else "" for p in PATHS]
        best = c.get("best_path", "")
        met = f">= {c['target']:.2f}x: {'met' if c['target_met'] else 'not met'}" if best else ""
        speed = f"**{c['best_speedup']:.2f}x**" if best else ""
        cap = f"{c['floor_cap']:.2f}x" if best else ""
        work = f"{c['work_cap']:.2f}x" if best and "work_cap" in c else ""
        row = [_case_name(c), str(c["repeats"]), *cells, best, speed, cap, work, met]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", default=str(HERE / "results.json"))
    ap.add_argument("--check", action="store_true", help="exit 1 if the README differs from the results")
    args = ap.parse_args(argv)
    entry = json.loads(Path(args.results).read_text())["benchmarks"].get("vs_flower")
    if not entry or not entry.get("result") or "cases" not in entry["result"]:
        print(f"{args.results}: no vs_flower result with cases; run benchmarks/run_all.py --only vs_flower")
        return 1
    text = README.read_text()
    if not BLOCK.search(text):
        print("README.md has no <!-- speed:vs_flower --> block")
        return 1
    new = BLOCK.sub(lambda m: m.group(1) + table(entry) + m.group(3), text)
    if args.check:
        print("README's speed table " + ("matches" if new == text else "DIFFERS from") + f" {args.results}")
        return 0 if new == text else 1
    README.write_text(new)
    print(f"README.md: speed table written from {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Rewrite the golden CSVs of tests/golden/test_golden.py from the current code.

    python tests/golden/regenerate.py

Run it only when a change is meant to move the numbers (a fixed bug, a new model, a changed
default), never to make a failing golden test pass: the test exists to catch changes nobody
meant. The commit that carries new golden files says which numbers moved and why.

The job is the default experiment, shortened: `python -m sim +experiment=fedmax_noniid
workload.rounds=3` (torch_threads=1, the default), run in-process through Hydra's compose and
`sim.jobs.run` exactly as the entry point runs it. Progress bars and plots are off: they write
no CSV. The files are pinned to the torch version CI installs (`TORCH_VERSION`).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import sim.__main__
from sim.jobs import refuse_unused, run

GOLDEN_DIR = Path(__file__).resolve().parent / "fedmax_noniid_3rounds"
CONF_DIR = Path(sim.__main__.__file__).resolve().parent / "conf"
OVERRIDES = ["+experiment=fedmax_noniid", "workload.rounds=3", "progress=false", "plots=false"]
TORCH_VERSION = "2.13.0"


def torch_mismatch() -> str | None:
    """Why the installed torch cannot reproduce the golden files, or None when it can."""
    if torch.__version__.startswith(TORCH_VERSION):
        return None
    return (
        f"the golden CSVs are pinned to torch {TORCH_VERSION} (the version CI installs); this is torch "
        f"{torch.__version__}, whose kernels may round differently: install torch=={TORCH_VERSION}"
    )


def run_experiment(out_dir: Path) -> None:
    """The golden job, as `python -m sim` would run it, writing its reports under `out_dir`."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = OmegaConf.to_object(compose(config_name="config", overrides=OVERRIDES))
        refuse_unused(cfg, OVERRIDES)
        cfg.compared = sim.__main__.compared_params(cfg)  # as the entry point does
        run(cfg, out_dir)


def csvs(folder: Path) -> dict[str, bytes]:
    """Every CSV under `folder`, by its path relative to it."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*.csv"))}


def regenerate() -> list[str]:
    """Run the job and replace the golden CSVs with its own; returns their names."""
    with tempfile.TemporaryDirectory() as tmp:
        run_experiment(Path(tmp))
        new = csvs(Path(tmp))
    if GOLDEN_DIR.exists():
        shutil.rmtree(GOLDEN_DIR)
    for name, data in new.items():
        (GOLDEN_DIR / name).parent.mkdir(parents=True, exist_ok=True)
        (GOLDEN_DIR / name).write_bytes(data)
    return list(new)


def main() -> int:
    problem = torch_mismatch()
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    names = regenerate()
    print(f"wrote {len(names)} CSVs under {GOLDEN_DIR}: {', '.join(names)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

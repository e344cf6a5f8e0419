"""The `edgesim` console script: `python -m sim` under a name of its own (and Hydra's shell
completion for it: `eval "$(edgesim -sc install=bash)"`).

Apart from `sim.__main__` because the script must take the command's first steps
(`sim.start.begin`: torch imported before Hydra) before it imports `sim.__main__`, which imports
Hydra as it loads; `python -m sim` takes them at the top of that module.
"""

from __future__ import annotations

import sys

from sim.start import begin


def main() -> None:
    begin(sys.argv[1:], may_split=True)
    from sim.__main__ import console

    console()

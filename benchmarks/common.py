"""What the benchmark scripts share: the load-average note beside their timings, and how they
hand over their result (an optional JSON file, and a last `RESULT {json}` line that
`run_all.py` reads)."""

from __future__ import annotations

import json
import os
from pathlib import Path


def load_note() -> str:
    """'1.23 (1 min), 1.10 (5 min) on 2 cpus', or '' where the system has no load average."""
    try:
        one, five, _ = os.getloadavg()
    except OSError:
        return ""
    return f"{one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cpus"


def finish(result: dict, json_path: str | None = None) -> None:
    """Write `result` to `json_path` (if given) and print it as the last `RESULT` line."""
    if json_path:
        Path(json_path).write_text(json.dumps(result, indent=2))
    print("RESULT " + json.dumps(result), flush=True)

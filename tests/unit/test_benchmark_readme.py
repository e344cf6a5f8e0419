"""The README's table of edgesim against Flower is the one benchmarks/readme.py writes from
benchmarks/results.json: never edited by hand, never left behind a rerun."""

import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


def _readme_tool():
    spec = importlib.util.spec_from_file_location("benchmark_readme", ROOT / "benchmarks" / "readme.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_speed_table_is_the_one_the_results_give(capsys):
    assert _readme_tool().main(["--check"]) == 0, capsys.readouterr().out


def test_the_table_shows_every_case_and_its_verdict():
    tool = _readme_tool()
    entry = {
        "command": "vs_flower.py",
        "started_utc": "2026-12-03T17:46:37+00:00",
        "load_before": "1",
        "load_after": "2",
        "result": {
            "rounds": 10,
            "cases": [
                {
                    "nodes": 1000,
                    "sweep": 1,
                    "repeats": 1,
                    "median_wall_s": {"flower": 100.0, "edgesim-local": 20.0, "floor": 5.0, "work": 25.0},
                    "best_path": "edgesim-local",
                    "best_speedup": 5.0,
                    "floor_cap": 20.0,
                    "work_cap": 6.67,
                    "target": 5.0,
                    "target_met": True,
                }
            ],
        },
    }
    text = tool.table(entry)
    row = "| 1,000 nodes | 1 | 100.0 | 20.0 |  |  | 5.0 | 25.0 | edgesim-local | **5.00x** | 20.00x | 6.67x | "
    row += ">= 5.00x: met |"
    assert row in text
    assert "2026-12-03 17:46 UTC" in text

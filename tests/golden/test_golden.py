"""The default experiment, shortened to 3 rounds, writes byte for byte the committed CSVs in
tests/golden/fedmax_noniid_3rounds/ (regenerate them only as regenerate.py says).

A restructure, a faster kernel path or a new dependency version must leave every number where
it was; this test is the quick check of that (benchmarks/same_csvs.py is the full one).
"""

from __future__ import annotations

import difflib

from tests.golden.regenerate import GOLDEN_DIR, csvs, run_experiment, torch_mismatch


def _first_difference(name: str, want: bytes, got: bytes) -> str:
    lines = difflib.unified_diff(
        want.decode().splitlines(), got.decode().splitlines(), "golden", "now", n=0, lineterm=""
    )
    return f"{name}:\n" + "\n".join(list(lines)[2:8])


def test_torch_is_the_pinned_version() -> None:
    problem = torch_mismatch()
    assert problem is None, problem


def test_fedmax_noniid_3_rounds_writes_the_golden_csvs(tmp_path) -> None:
    problem = torch_mismatch()
    assert problem is None, problem  # a failure, not a skip: other numbers are no check at all
    want = csvs(GOLDEN_DIR)
    assert len(want) == 13, f"{GOLDEN_DIR} should hold comparison.csv and 3 x (rounds, clients, summary, timeline)"
    run_experiment(tmp_path)
    got = csvs(tmp_path)
    assert sorted(got) == sorted(want), "the job writes other CSVs than the golden ones"
    differ = [_first_difference(n, want[n], got[n]) for n in want if want[n] != got[n]]
    assert not differ, (
        "CSVs differ from the golden ones (tests/golden/regenerate.py says when to regenerate):\n" + "\n\n".join(differ)
    )

"""sim.report: rows written without pandas are the bytes pandas would write."""

from __future__ import annotations

import math
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.report import _any_cells, _cells, frame, write_csv, write_rows


@dataclass
class Row:
    round: int
    name: str
    value: float
    ok: bool


TABLES = {
    "typed rows": [Row(1, "a", 0.1, True), Row(2, "b,c", math.nan, False), Row(3, 'say "x"', 1234567891.0, True)],
    "ints, floats, NaN, None": [{"n": 1, "x": 2, "y": None, "z": 1.0}, {"n": 2, "x": 0.5, "y": 3, "z": math.nan}],
    "numpy scalars": [
        {"a": np.int64(5), "b": np.float32(0.1), "c": np.float64(1e-12)},
        {"a": np.int64(7), "b": 2.0, "c": 3},
    ],
    "mixed and missing": [{"s": "x", "t": 1}, {"s": 2.5, "u": True}, {"s": None, "t": 3, "u": False}],
    "one summary row": [{"strategy": "fedavg", "rounds_to_target": math.nan, "bytes_down": 12345678901, "ber": 1e-4}],
}


@pytest.mark.parametrize("name", list(TABLES))
def test_rows_are_written_as_pandas_writes_them(tmp_path, name) -> None:
    rows = TABLES[name]
    ours = write_rows(rows, tmp_path / "rows.csv").read_bytes()
    assert ours == write_csv(frame(rows), tmp_path / "pandas.csv").read_bytes()


_CELL = st.one_of(
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.none(),
    st.just(math.nan),
    st.booleans(),
    st.text(max_size=3),
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.one_of(st.integers(-(10**12), 10**12), st.floats(), st.none()), max_size=8)
    | st.lists(_CELL, max_size=8)
)
def test_a_column_of_plain_numbers_is_formatted_by_the_general_rule(values) -> None:
    """The fast path for ints, floats and None gives what the rule for any values gives."""
    assert _cells(values) == _any_cells(values)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries({"a": _CELL, "b": st.one_of(st.integers(0, 9), st.none(), st.floats(0, 1))}),
        min_size=1,
        max_size=5,
    )
)
def test_any_rows_are_written_as_pandas_writes_them(tmp_path_factory, rows) -> None:
    folder = tmp_path_factory.mktemp("rows")
    ours = write_rows(rows, folder / "rows.csv").read_bytes()
    assert ours == write_csv(frame(rows), folder / "pandas.csv").read_bytes()


def test_an_empty_table_keeps_its_header(tmp_path) -> None:
    assert write_rows([], tmp_path / "e.csv", ["round", "value"]).read_text() == "round,value\n"


def test_a_federated_job_imports_neither_pandas_nor_scikit_learn_nor_matplotlib() -> None:
    code = (
        "import sys, sim.federated.job, benchmarks.digits_fl, experiments.common.data as d; d.digits_arrays(); "
        "print(sorted({'pandas', 'sklearn', 'matplotlib'} & {m.split('.')[0] for m in sys.modules}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

"""clients.csv as rounds end: the new rounds' rows appended, the same bytes as writing it whole."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from sim.federated import job
from sim.report import append_rows, header_of, write_rows

pytestmark = pytest.mark.unit


@dataclass
class _Round:
    round: int


@dataclass
class _Client:
    round: int
    node_id: int
    energy_j: float
    status: str


def _clients(rounds: int, per_round: int = 3) -> list[_Client]:
    return [_Client(r, n, 0.5 * n + r, "received") for r in range(1, rounds + 1) for n in range(per_round)]


def test_rows_appended_round_by_round_equal_the_file_written_whole(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(job, "CLIENT_COLUMNS", ["round", "node_id", "energy_j", "status"])
    monkeypatch.setattr(job, "ROUND_COLUMNS", ["round"])
    clients: list[_Client] = []
    monkeypatch.setattr(job, "_rows", lambda grid, evals, app_cfg: ([_Round(r) for r in range(1, last + 1)], clients))
    writer = job._RowsSoFar(tmp_path)
    for last in range(1, 6):
        clients[:] = clients + _clients(last)[len(clients) :]
        writer.write(None, {}, None)
        want = tmp_path / "want.csv"
        write_rows([c for c in clients if c.round < last], want, job.CLIENT_COLUMNS)
        assert (tmp_path / "clients.csv").read_bytes() == want.read_bytes(), last
    assert len(writer.written) == 4 * 3


def test_rows_that_are_not_a_continuation_rewrite_the_file(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(job, "CLIENT_COLUMNS", ["round", "node_id", "energy_j", "status"])
    monkeypatch.setattr(job, "ROUND_COLUMNS", ["round"])
    rows = _clients(3)
    state = {"clients": rows, "last": 3}
    monkeypatch.setattr(
        job, "_rows", lambda g, e, a: ([_Round(r) for r in range(1, state["last"] + 1)], state["clients"])
    )
    writer = job._RowsSoFar(tmp_path)
    writer.write(None, {}, None)
    late = _Client(1, 9, 9.0, "received")  # an asynchronous server's late row of round 1
    state["clients"], state["last"] = [*rows[:3], late, *rows[3:], *_clients(4)[9:]], 4
    writer.write(None, {}, None)
    want = tmp_path / "want.csv"
    write_rows([c for c in state["clients"] if c.round < 4], want, job.CLIENT_COLUMNS)
    assert (tmp_path / "clients.csv").read_bytes() == want.read_bytes()


def test_append_refuses_a_row_with_a_column_the_header_lacks(tmp_path) -> None:
    path = tmp_path / "t.csv"
    write_rows([{"a": 1}], path)
    assert header_of([{"a": 1}]) == ["a"]
    before = path.read_bytes()
    assert not append_rows([{"a": 2, "b": 3}], path, ["a"])
    assert path.read_bytes() == before
    assert append_rows([{"a": 2}], path, ["a"]) and path.read_text() == "a\n1\n2\n"

"""`sim.console.Progress`: a live bar on a terminal, plain lines elsewhere, nothing when off;
off a terminal it makes no tqdm bar (a disabled one still creates a multiprocessing lock)."""

from __future__ import annotations

import io

import pytest

from sim.console import Progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("enabled", [True, False])
def test_off_a_terminal_progress_is_plain_lines_and_no_bar(monkeypatch, enabled) -> None:
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    with Progress("fedavg", 3, "round", enabled) as p:
        p.to(1, accuracy="0.5")
        p.to(1, accuracy="0.6")  # no step: no line
        p.to(3, accuracy="0.7")
    assert p.bar is None
    expected = "fedavg: 1/3 rounds, accuracy 0.5\nfedavg: 3/3 rounds, accuracy 0.7\n"
    assert err.getvalue() == (expected if enabled else "")


def test_on_a_terminal_progress_is_a_bar_that_reaches_its_total(monkeypatch) -> None:
    err = _Terminal()
    monkeypatch.setattr("sys.stderr", err)
    with Progress("fedavg", 3, "round", True) as p:
        p.to(2, accuracy="0.5")
        p.to(3, accuracy="0.7")
        assert p.bar is not None and p.bar.n == 3
    assert "fedavg" in err.getvalue() and "accuracy 0.7" in err.getvalue()
    assert "rounds," not in err.getvalue()  # the bar, not the plain lines

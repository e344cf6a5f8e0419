"""`sim.collector`: the command pauses Python's cyclic collector while it imports; the job
resumes it, with what was alive then frozen; a library caller's collector is left as it was."""

from __future__ import annotations

import contextlib
import gc

import pytest

import sim.__main__ as entry
from sim import collector, jobs


@pytest.fixture(autouse=True)
def _collector_restored():
    """Each test leaves the collector on, nothing frozen, no pause pending (as pytest runs)."""
    assert gc.isenabled() and gc.get_freeze_count() == 0
    yield
    collector._paused = False
    gc.unfreeze()
    gc.enable()


def test_pause_then_resume_freezes_what_is_alive_and_collects_again() -> None:
    held = [[] for _ in range(10)]
    collector.pause()
    assert not gc.isenabled()
    collector.resume()
    assert gc.isenabled() and gc.get_freeze_count() >= len(held)
    gc.unfreeze()
    collector.resume()  # a second resume: no pause pending, nothing frozen again
    assert gc.get_freeze_count() == 0


def test_a_collector_turned_off_by_the_caller_stays_off() -> None:
    gc.disable()
    collector.pause()
    collector.resume()
    assert not gc.isenabled() and gc.get_freeze_count() == 0


def test_resume_without_a_pause_changes_nothing() -> None:
    collector.resume()
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_a_job_resumes_the_collector_before_its_own_work(tmp_path, monkeypatch) -> None:
    seen = {}

    class Stop(Exception):
        pass

    def validate(cfg) -> None:  # the job's first step once torch is imported
        seen.update(enabled=gc.isenabled(), frozen=gc.get_freeze_count())
        raise Stop

    monkeypatch.setattr(jobs, "validate", validate)
    collector.pause()
    with pytest.raises(Stop):
        jobs.run(None, tmp_path)
    assert seen["enabled"] and seen["frozen"] > 1000  # torch's and Flower's objects, out of its reach


@pytest.mark.parametrize("ends", ["well", "with an error"])
def test_the_command_pauses_it_and_a_command_without_a_job_restores_it(ends, monkeypatch) -> None:
    seen = {}

    def cli() -> None:  # what runs between the pause and the end of the command
        seen["enabled"] = gc.isenabled()
        if ends != "well":
            raise SystemExit(2)

    monkeypatch.setattr(entry, "cli", cli)
    monkeypatch.setattr(entry, "_finished", False)  # restored: this process must not end at exit
    with pytest.raises(SystemExit) if ends != "well" else contextlib.nullcontext():
        entry.console()
    assert seen["enabled"] is False
    assert gc.isenabled() and gc.get_freeze_count() == 0  # no job ran: nothing frozen

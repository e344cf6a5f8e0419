"""`sim.split`'s gate: the job's process tells the command line, once, that its import of torch is
past `sim.torch_internals.IMPORT_MIDPOINT` (or over); the command line waits for that, for the
pipe's end, or at most its timeout, before its first import."""

from __future__ import annotations

import os
import select
import sys
import time
import types

import pytest

from sim import split
from sim.torch_internals import IMPORT_MIDPOINT

MARKER = "edgesim_test_gate_marker"


def _ready(fd: int) -> bool:
    return bool(select.select([fd], [], [], 0)[0])


@pytest.fixture
def pipe():
    r, w = os.pipe()
    yield r, w
    for fd in (r, w):
        try:
            os.close(fd)
        except OSError:  # closed by the code under test
            pass


def test_the_gate_waits_for_the_midpoint_of_torchs_import(pipe) -> None:
    assert split._Gate(pipe[1]).after == IMPORT_MIDPOINT == "torch.fx"


def test_the_gate_opens_once_at_the_first_import_after_its_module(pipe, monkeypatch) -> None:
    r, w = pipe
    gate = split._Gate(w)
    gate.after = MARKER
    assert gate.find_spec("json") is None  # never finds anything: the import goes on as usual
    assert not _ready(r)
    monkeypatch.setitem(sys.modules, MARKER, types.ModuleType(MARKER))
    assert gate.find_spec("json") is None
    assert os.read(r, 8) == b"\0" and os.read(r, 8) == b""  # one byte, then the pipe's end
    assert gate.fd is None
    gate.find_spec("json")  # open: nothing more
    gate.open()


def test_the_gate_opens_when_torchs_import_ends_without_its_module(pipe) -> None:
    r, w = pipe
    gate = split._Gate(w)
    gate.after = MARKER
    gate.open()
    assert os.read(r, 8) == b"\0" and os.read(r, 8) == b""


def test_a_gate_whose_command_line_has_ended_opens_without_error(pipe) -> None:
    r, w = pipe
    os.close(r)
    gate = split._Gate(w)
    gate.open()  # BrokenPipeError, taken
    assert gate.fd is None


@pytest.mark.parametrize("event", ["byte", "end"])
def test_the_command_line_goes_on_at_the_byte_or_the_pipes_end(pipe, event) -> None:
    r, w = pipe
    if event == "byte":
        os.write(w, b"\0")
    else:
        os.close(w)
    t0 = time.monotonic()
    split._wait_at_gate(r, timeout_s=30)
    assert time.monotonic() - t0 < 5
    with pytest.raises(OSError):
        os.fstat(r)  # closed


def test_the_command_line_goes_on_after_its_timeout(pipe) -> None:
    r, _ = pipe
    t0 = time.monotonic()
    split._wait_at_gate(r, timeout_s=0.05)
    assert 0.04 <= time.monotonic() - t0 < 5

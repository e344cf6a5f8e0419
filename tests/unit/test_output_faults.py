"""A write that fails (a full disk, a rename refused, a folder that is not one) is one
`OutputError` naming the file and the cause, from every writer of a run's outputs; the file
that was there stays whole and no temporary file is left behind. The output folder is checked
by writing in it before a run starts.

A full disk is real here, not a mock: the writer's temporary file is made a link to /dev/full,
where every write fails with ENOSPC (Linux), so each writer meets the error where it would
(inside pandas, matplotlib, torch)."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

import pytest
import torch

from experiments.common.cache import save_torch
from experiments.common.files import OutputError, atomic_path
from sim.html import write_page
from sim.report import save_figure, write_csv, write_json, write_rows, write_text

NO_SPACE = os.strerror(errno.ENOSPC)  # "No space left on device"


def full_disk(monkeypatch, prefix: str = ".") -> None:
    """From now on, the temporary file of a write whose name starts with `prefix` is a link to
    /dev/full: the write fails as on a full disk (ENOSPC), wherever the writer's library does it."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    real = tempfile.mkstemp

    def mkstemp(*args, **kwargs):
        fd, name = real(*args, **kwargs)
        if os.path.basename(name).startswith(prefix):
            os.close(fd)
            os.unlink(name)
            os.symlink("/dev/full", name)
            fd = os.open(name, os.O_WRONLY)
        return fd, name

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [0, 1])
    return fig


def _frame():
    import pandas as pd

    return pd.DataFrame({"round": [1, 2], "accuracy": [0.5, 0.75]})


# name -> write(path): every writer of a run's outputs
WRITERS = {
    "rows.csv": lambda p: write_rows([{"round": 1, "accuracy": 0.5}], p),
    "frame.csv": lambda p: write_csv(_frame(), p),
    "config.yaml": lambda p: write_text("seed: 0\n" * 2000, p),
    "wallclock.json": lambda p: write_json({"wall_s": 1.0}, p),
    "plot.png": lambda p: save_figure(_figure(), p),
    "model.pt": lambda p: save_torch({"state": {"w": torch.zeros(1000)}}, p),
    "report.html": lambda p: write_page(p.parent, "a run", "seed: 0", [], []),
}


def _left(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("name", list(WRITERS))
def test_a_full_disk_is_one_error_naming_the_file_and_the_old_file_stays(name, tmp_path, monkeypatch) -> None:
    path = tmp_path / name
    path.write_bytes(b"the previous run's file\n")
    full_disk(monkeypatch)
    with pytest.raises(OutputError) as caught:
        WRITERS[name](path)
    assert str(caught.value) == f"cannot write {path}: {NO_SPACE}"
    assert caught.value.path == path and caught.value.cause.errno == errno.ENOSPC
    assert path.read_bytes() == b"the previous run's file\n"
    assert _left(tmp_path) == [name]  # no temporary file left behind


@pytest.mark.parametrize("name", list(WRITERS))
def test_a_refused_rename_is_one_error_and_leaves_no_temporary_file(name, tmp_path, monkeypatch) -> None:
    def refuse(src, dst):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(dst))

    monkeypatch.setattr(os, "replace", refuse)
    path = tmp_path / name
    with pytest.raises(OutputError, match=f"^cannot write {path}: Permission denied$"):
        WRITERS[name](path)
    assert _left(tmp_path) == []


@pytest.mark.parametrize("name", list(WRITERS))
def test_a_folder_that_is_not_one_is_one_error(name, tmp_path) -> None:
    (tmp_path / "gone").write_text("a file where the folder was\n")
    path = tmp_path / "gone" / name
    with pytest.raises(OutputError, match=f"^cannot write {path}: Not a directory$"):
        WRITERS[name](path)
    assert _left(tmp_path) == ["gone"]


def test_a_written_file_replaces_the_old_one_whole(tmp_path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("old\n")
    write_rows([{"a": 1}], path)
    assert path.read_text() == "a\n1\n" and _left(tmp_path) == ["rows.csv"]
    with pytest.raises(ZeroDivisionError):  # an error that is not a write's passes as it is
        with atomic_path(path) as tmp:
            Path(tmp).write_text("half")
            1 / 0
    assert path.read_text() == "a\n1\n" and _left(tmp_path) == ["rows.csv"]


def test_a_trackers_failed_write_is_an_output_error(tmp_path) -> None:
    from sim.jobs import default_config
    from sim.tracking import track

    out = tmp_path / "out"
    write_rows([{"strategy": "fedavg", "final_accuracy": 0.5}], out / "summary.csv")
    write_rows([{"round": 1, "accuracy": 0.5}], out / "rounds.csv")
    (tmp_path / "file").write_text("not a folder\n")
    cfg = default_config()
    cfg.tracking, cfg.tracking_uri = "tensorboard", str(tmp_path / "file" / "tb")
    with pytest.raises(OutputError, match=f"^cannot write {tmp_path / 'file' / 'tb'}: "):
        track(cfg, out, "a run")


def test_the_output_folder_is_probed_by_writing_in_it(tmp_path) -> None:
    from sim.__main__ import unwritable

    (tmp_path / "file").write_text("x\n")
    assert unwritable(tmp_path / "file" / "out") == "Not a directory"
    assert unwritable(tmp_path / "file") == "Not a directory"
    assert unwritable(tmp_path / "a" / "b" / "c") is None
    assert _left(tmp_path) == ["file"]  # what the probe made, it removed
    assert unwritable(tmp_path) is None and _left(tmp_path) == ["file"]

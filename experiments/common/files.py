"""Files written whole or not at all, and the one error a failed write raises.

`atomic_path(path)` yields a temporary name beside `path`; the caller writes it, and on success
it replaces `path` in one rename: a reader (or a run that dies half-way) sees the old file or
the new one, never part of one. Every output of a run (its CSVs, plots, report, the model and
dream caches) is written through it. A write that fails with an `OSError` (disk full, no
permission, a folder that vanished) removes its temporary file and raises `OutputError`, naming
the path and the cause in one line; what was on disk before stays as it was. The command line
turns an `OutputError` into that line and exit status 1 (`sim/__main__.py`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["OutputError", "atomic_path"]


class OutputError(Exception):
    """A file could not be written: `path` (the file meant) and `cause` (the `OSError`)."""

    def __init__(self, path: str | os.PathLike, cause: OSError):
        self.path, self.cause = Path(path), cause
        super().__init__(f"cannot write {self.path}: {cause.strerror or cause}")

    def __reduce__(self):  # whole across processes (`sim.split`)
        return type(self), (self.path, self.cause)


def _file_mode() -> int:
    """The mode `open()` gives a new file: 0666 less the process's umask (0644 under the usual
    022); `mkstemp` makes its files 0600 whatever the umask says."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary name beside `path` (its folder made if missing); on success it replaces
    `path` in one rename, with the permissions a plain `open()` would have given it. An `OSError`
    on the way (in the caller's writing too) is an `OutputError` naming `path`; the temporary
    file never stays behind."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
        os.close(fd)
        yield tmp
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except FileExistsError as exc:  # from mkdir: a file stands where a folder should
        raise OutputError(path, NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), exc.filename)) from None
    except OSError as exc:
        raise OutputError(path, exc) from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):  # gone (renamed, or its folder with it)
                os.unlink(tmp)

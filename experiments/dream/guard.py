"""A guard on the data owner's images: `RealImages` holds them, `sealed()` makes any read of
them raise while the dream path runs (generation and distillation from dreams must work from
the metadata and the teacher alone)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["RealImageAccess", "RealImages", "sealed"]

_SEALED = [False]


class RealImageAccess(RuntimeError):
    """The dream path tried to read the data owner's images."""


class RealImages:
    """The real training images; `.x` and `.y` read them (refused while `sealed`)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self._x, self._y = x, y

    def _check(self) -> None:
        if _SEALED[0]:
            raise RealImageAccess("the dream path read the real training images")

    @property
    def x(self) -> torch.Tensor:
        self._check()
        return self._x

    @property
    def y(self) -> torch.Tensor:
        self._check()
        return self._y

    def __len__(self) -> int:  # their number is no secret: it sets how many dreams to make
        return len(self._y)


@contextlib.contextmanager
def sealed() -> Iterator[None]:
    """While inside, reading a `RealImages` raises `RealImageAccess`."""
    before, _SEALED[0] = _SEALED[0], True
    try:
        yield
    finally:
        _SEALED[0] = before

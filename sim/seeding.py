"""Every random stream of a run, derived from the one `seed`.

A stream is named and keyed (round, node, ...), so its draws do not depend on the order in
which other streams were used: the same seed gives the same outcome whichever back end runs
the clients, in whatever order.
"""

from __future__ import annotations

import zlib

import numpy as np

__all__ = ["LazyStream", "stream", "stream_seed"]


def _word(key) -> int:
    if isinstance(key, (int, np.integer)):
        return int(key) & 0xFFFFFFFF
    return zlib.crc32(str(key).encode())


def stream_seed(seed: int, name: str, *keys) -> list[int]:
    return [int(seed) & 0xFFFFFFFF, _word(name), *(_word(k) for k in keys)]


def stream(seed: int, name: str, *keys) -> np.random.Generator:
    """The generator for stream `name` at `keys` (e.g. round, node) of run `seed`."""
    return np.random.default_rng(np.random.SeedSequence(stream_seed(seed, name, *keys)))


class LazyStream:
    """`stream(seed, name, *keys)`, made when it is first drawn from: the same draws, and none of
    the ~15 us a generator costs to seed where nothing is drawn (a transfer over an error-free
    link draws nothing; a federated round made two such generators per client)."""

    __slots__ = ("_args", "_rng")

    def __init__(self, seed: int, name: str, *keys):
        self._args, self._rng = (seed, name, *keys), None

    def __getattr__(self, attr: str):
        if self._rng is None:
            self._rng = stream(*self._args)
        return getattr(self._rng, attr)

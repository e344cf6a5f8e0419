"""Every random stream of a run, derived from the one `seed`.

A stream is named and keyed (round, node, ...), so its draws do not depend on the order in
which other streams were used: the same seed gives the same outcome whichever back end runs
the clients, in whatever order.
"""

from __future__ import annotations

import zlib

import numpy as np

__all__ = ["stream", "stream_seed"]


def _word(key) -> int:
    if isinstance(key, (int, np.integer)):
        return int(key) & 0xFFFFFFFF
    return zlib.crc32(str(key).encode())


def stream_seed(seed: int, name: str, *keys) -> list[int]:
    return [int(seed) & 0xFFFFFFFF, _word(name), *(_word(k) for k in keys)]


def stream(seed: int, name: str, *keys) -> np.random.Generator:
    """The generator for stream `name` at `keys` (e.g. round, node) of run `seed`."""
    return np.random.default_rng(np.random.SeedSequence(stream_seed(seed, name, *keys)))

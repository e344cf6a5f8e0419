"""A run's random streams: keyed, so their draws do not depend on order; a lazy one draws the same."""

from __future__ import annotations

import numpy as np
import pytest

from channels import IndependentBits, Link, transfer
from sim.seeding import LazyStream, stream

pytestmark = pytest.mark.unit


def test_a_lazy_stream_draws_what_the_stream_draws_and_is_made_only_when_drawn_from() -> None:
    lazy = LazyStream(7, "uplink", 3, 12, "train")
    assert lazy._rng is None
    want = stream(7, "uplink", 3, 12, "train")
    assert np.array_equal(lazy.random(5), want.random(5))
    assert lazy.integers(2**62) == want.integers(2**62)
    assert isinstance(lazy._rng, np.random.Generator)


def test_an_error_free_transfer_draws_nothing_and_a_noisy_one_draws_as_with_the_stream() -> None:
    clean = LazyStream(1, "downlink", 1)
    transfer(Link(bandwidth_bps=1e6, latency_s=0.01, errors=IndependentBits(0.0)), 10_000, clean)
    assert clean._rng is None
    noisy = Link(bandwidth_bps=1e6, latency_s=0.01, errors=IndependentBits(1e-4))
    a = transfer(noisy, 10_000, LazyStream(1, "downlink", 1))
    b = transfer(noisy, 10_000, stream(1, "downlink", 1))
    assert (a.attempts, a.bits_sent, a.time_s, a.packets_delivered) == (
        b.attempts,
        b.bits_sent,
        b.time_s,
        b.packets_delivered,
    )
    assert a.attempts > a.packets

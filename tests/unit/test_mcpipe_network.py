"""mcPipe on the simulated network: the master and the stages are devices of one
`sim.net.Network` per run; on a shared medium messages in flight at once split the cell's
capacity, and every device leaves its states in the run's timeline."""

from __future__ import annotations

import pytest
import torch

from sim.mcpipe.links import TIMELINE_MICROBATCHES, Links
from sim.mcpipe.timeline import simulate
from sim.net import TIMELINE_COLUMNS

from .test_mcpipe import _cfg, _job


def _two_at_once(medium: str) -> tuple[list[float], Links, float]:
    """The master sends w0 a tensor while w0 sends w1 one of the same size, both at t = 0;
    returns when each arrived, the links, and one message's time alone."""
    cfg = _cfg(workers=[2])
    cfg.channel.bandwidth_bps, cfg.channel.latency_s = 1e6, 0.002
    cfg.channel.medium = medium
    job = _job(cfg)
    links, arrived = Links(job, 2, ("two at once",)), []
    x = torch.zeros(16, 64)  # 4096 bytes: 3 packets of 1500 with 40 header bytes each
    for src, dst in (("master", "w0"), ("w0", "w1")):
        links.env.process(links.send(src, dst, [x], lambda _p: arrived.append(links.env.now)))
    links.env.run()
    airtime_s = (4096 + 3 * 40) * 8 / 1e6
    return arrived, links, airtime_s


def test_concurrent_messages_contend_on_a_shared_medium() -> None:
    """Dedicated: each message lasts its airtime plus the latency. Shared (one cell of the link's
    rate): the two in flight at once each get half of it, so both end after twice the airtime."""
    dedicated, _, airtime_s = _two_at_once("dedicated")
    shared, links, _ = _two_at_once("shared")
    assert dedicated == pytest.approx([airtime_s + 0.002] * 2, rel=1e-12)
    assert shared == pytest.approx([2 * airtime_s + 0.002] * 2, rel=1e-12)
    rows = links.timeline()
    assert list(rows[0]) == TIMELINE_COLUMNS
    # w0 transmits and receives at once (it is in both states), the master only transmits
    states = {(r["device"], r["state"]) for r in rows}
    assert states == {("master", "transmit"), ("w0", "transmit"), ("w0", "receive"), ("w1", "receive")}
    for r in rows:
        assert r["end_s"] - r["start_s"] == pytest.approx(2 * airtime_s + 0.002, rel=1e-12)
    ledger = links.net.ledger
    assert ledger.busy_s[links.index["w0"]] == pytest.approx(2 * (2 * airtime_s + 0.002))


@pytest.fixture(scope="module")
def both_media():
    """A three-stage PipeDream run on a slow link, on each medium."""
    runs = {}
    for medium in ("dedicated", "shared"):
        cfg = _cfg(workers=[3], sim_time_s=0.5, eval_every_s=0.5)
        cfg.channel.bandwidth_bps, cfg.channel.latency_s = 2e5, 0.001
        cfg.channel.medium = medium
        runs[medium] = simulate(_job(cfg), "pipedream", 3)
    return runs


def test_pipeline_stages_contend_on_a_shared_medium(both_media) -> None:
    """The same schedule makes fewer updates when its stages' and the master's messages share
    one cell, and its transfers take longer than their airtime alone."""
    dedicated, shared = both_media["dedicated"], both_media["shared"]
    assert 0 < shared.summary["updates"] < dedicated.summary["updates"]
    assert shared.summary["channel_medium"] == "shared"

    def first_microbatches_s(res) -> float:  # the timeline ends as microbatch 32 enters
        return max(r["end_s"] for r in res.timeline)

    assert first_microbatches_s(shared) > first_microbatches_s(dedicated)


def test_timeline_rows_for_every_stage_and_the_master(both_media) -> None:
    for res in both_media.values():
        rows = res.timeline
        assert rows and all(list(r) == TIMELINE_COLUMNS for r in rows)
        devices = {r["device"] for r in rows}
        assert devices == {"master", "w0", "w1", "w2"}
        for w in ("w0", "w1", "w2"):
            assert {r["state"] for r in rows if r["device"] == w} == {"compute", "receive", "transmit"}
        assert {r["state"] for r in rows if r["device"] == "master"} == {"transmit"}
        assert [r["start_s"] for r in rows] == sorted(r["start_s"] for r in rows)


def test_the_timeline_stops_after_its_first_microbatches() -> None:
    """A run longer than `TIMELINE_MICROBATCHES` keeps only the rows before the master hands
    out that microbatch."""
    cfg = _cfg(workers=[2], sim_time_s=0.05, eval_every_s=0.05)
    job = _job(cfg)
    res = simulate(job, "local", 1)
    assert res.summary["updates"] > TIMELINE_MICROBATCHES
    cutoff = res.trace[TIMELINE_MICROBATCHES][0]  # when step 32 starts (rounded to 1 ns)
    # back-to-back steps are one compute row, cut where the timeline ends
    ((row,),) = [res.timeline]
    assert (row["device"], row["state"], row["start_s"]) == ("w0", "compute", 0)
    assert row["end_s"] == pytest.approx(cutoff, abs=1e-9)

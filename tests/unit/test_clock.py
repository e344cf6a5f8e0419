"""Exact event traces of one simulated round (SimPy clock)."""

import numpy as np
import pytest

from channels import TransferOutcome
from sim.federated.timeline import ClientPlan, run_round
from sim.net import STATES, EnergyLedger

EMPTY = np.zeros(0, dtype=np.int64)


def outcome(time_s: float, delivered: bool = True) -> TransferOutcome:
    return TransferOutcome(
        delivered=delivered,
        time_s=time_s,
        packets=1,
        attempts=1,
        bits_sent=8,
        flip_positions=EMPTY,
        packets_delivered=1 if delivered else 0,
    )


def ledger(n: int = 4) -> EnergyLedger:
    # device d: compute 10 W, transmit 2 W, receive 1 W, idle 0.5 W
    return EnergyLedger(np.tile([10.0, 2.0, 1.0, 0.5], (n, 1)))


def test_trace_of_a_round_with_every_outcome():
    plans = [
        ClientPlan(1, 0, down=outcome(1.0), compute_s=2.0, up=outcome(0.5)),  # arrives at 3.5
        ClientPlan(2, 1, dropped=True),  # never answers
        ClientPlan(3, 2, down=outcome(1.0, delivered=False)),  # download gives up
        ClientPlan(4, 3, down=outcome(0.25), fits=False, up=outcome(0.25)),  # reports OOM at 0.5
    ]
    trace: list = []
    end, tls = run_round(10.0, plans, deadline_s=None, ledger=ledger(), trace=trace)
    assert trace == [
        (10.0, 1, "download"),
        (10.0, 2, "dropped"),
        (10.0, 3, "download"),
        (10.0, 4, "download"),
        (10.25, 4, "out_of_memory"),
        (10.25, 4, "upload"),
        (11.0, 1, "compute"),
        (11.0, 3, "lost_down"),
        (13.0, 1, "upload"),
        (13.5, 1, "arrived"),
    ]
    assert [t.status for t in tls] == ["received", "dropped", "lost_down", "out_of_memory"]
    assert end == 13.5  # no deadline: the server waits for every device to finish or fail
    assert tls[0].arrival_s == 13.5 and (tls[0].down_s, tls[0].compute_s, tls[0].up_s) == (1.0, 2.0, 0.5)


def test_deadline_makes_stragglers_and_ends_the_round():
    plans = [
        ClientPlan(1, 0, down=outcome(1.0), compute_s=1.0, up=outcome(1.0)),  # arrives at 3
        ClientPlan(2, 1, down=outcome(1.0), compute_s=5.0, up=outcome(1.0)),  # would arrive at 7
    ]
    trace: list = []
    end, tls = run_round(0.0, plans, deadline_s=4.0, ledger=ledger(), trace=trace)
    assert end == 4.0
    assert [t.status for t in tls] == ["received", "straggler"]
    assert trace[-2:] == [(6.0, 2, "upload"), (7.0, 2, "arrived")]  # the device still finishes


def test_round_ends_early_when_every_reply_is_in():
    plans = [ClientPlan(1, 0, down=outcome(1.0), compute_s=1.0, up=outcome(1.0))]
    end, tls = run_round(5.0, plans, deadline_s=100.0, ledger=ledger(), trace=[])
    assert end == 8.0 and tls[0].status == "received"


def test_a_dropped_device_holds_the_server_until_the_deadline():
    plans = [ClientPlan(1, 0, down=outcome(1.0), compute_s=1.0, up=outcome(1.0)), ClientPlan(2, 1, dropped=True)]
    end, _ = run_round(0.0, plans, deadline_s=30.0, ledger=ledger(), trace=[])
    assert end == 30.0


def test_energy_ledger_by_state():
    led = ledger(2)
    plans = [ClientPlan(1, 0, down=outcome(1.0), compute_s=2.0, up=outcome(0.5))]
    _, tls = run_round(0.0, plans, deadline_s=None, ledger=led, trace=[])
    # receive 1 s x 1 W, compute 2 s x 10 W, transmit 0.5 s x 2 W
    assert tls[0].energy_j == pytest.approx(1.0 + 20.0 + 1.0)
    row = dict(zip(STATES, led.energy_j[0]))
    assert row == {"compute": 20.0, "transmit": 1.0, "receive": 1.0, "idle": 0.0}
    led.close(total_s=10.0)
    assert led.energy_j[0, STATES.index("idle")] == pytest.approx((10.0 - 3.5) * 0.5)
    assert led.energy_j[1, STATES.index("idle")] == pytest.approx(10.0 * 0.5)

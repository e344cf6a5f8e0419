"""The run's one clock: rounds of stateful devices over a dedicated or shared medium, exact."""

import numpy as np
import pytest
import simpy

from channels import IndependentBits, Link, TransferOutcome
from devices import CATALOGUE
from sim.federated.timeline import ClientPlan, Round, client
from sim.net import STATES, EnergyLedger, Medium, Network, Server, Timeline, fair_rates
from sim.net.availability import AlwaysOnline

EMPTY = np.zeros(0, dtype=np.int64)
LINK = Link(bandwidth_bps=8.0, latency_s=0.0, errors=IndependentBits(0.0))  # 1 byte/s: bits_sent = 8 x seconds


def outcome(time_s: float, delivered: bool = True) -> TransferOutcome:
    return TransferOutcome(
        delivered=delivered,
        time_s=time_s,
        packets=1,
        attempts=1,
        bits_sent=int(8 * time_s * 8) // 8,
        flip_positions=EMPTY,
        packets_delivered=1 if delivered else 0,
    )


def ledger(n: int = 4) -> EnergyLedger:
    # device d: compute 10 W, transmit 2 W, receive 1 W, idle 0.5 W
    return EnergyLedger(np.tile([10.0, 2.0, 1.0, 0.5], (n, 1)))


class _Row:
    status, download_s, compute_s, upload_s, energy_j, arrival_s = "", 0.0, 0.0, 0.0, 0.0, float("nan")


def network(n=4, medium="dedicated", availability=None, start_s=0.0, led=None) -> Network:
    env = simpy.Environment(initial_time=start_s)
    return Network(
        env,
        led or ledger(n),
        Medium(env, medium, up_bps=8.0, down_bps=8.0),
        availability or AlwaysOnline(),
        lambda _d: (LINK, LINK),
        str,
        Timeline(),
    )


def play(net: Network, plans, deadline_s):
    rows = [_Row() for _ in plans]
    rnd = Round(net.env, rows, deadline_s)
    for i, plan in enumerate(plans):
        net.env.process(client(net, plan, rnd, i))
    return rnd.play(), rows


def test_a_round_with_every_outcome():
    net = network(start_s=10.0)
    plans = [
        ClientPlan(1, 0, down=outcome(1.0), compute_s=2.0, up=outcome(0.5)),  # arrives at 13.5
        ClientPlan(2, 1, unavailable="offline"),  # never answers
        ClientPlan(3, 2, down=outcome(1.0, delivered=False)),  # download gives up
        ClientPlan(4, 3, down=outcome(0.25), fits=False, up=outcome(0.25)),  # reports OOM at 10.5
    ]
    end, rows = play(net, plans, deadline_s=None)
    assert [r.status for r in rows] == ["received", "offline", "lost_down", "out_of_memory"]
    assert end == 13.5  # no deadline: the server waits for every device to finish or fail
    assert rows[0].arrival_s == 13.5 and (rows[0].download_s, rows[0].compute_s, rows[0].upload_s) == (1.0, 2.0, 0.5)
    states = [(r["device"], r["state"], r["start_s"], r["end_s"]) for r in net.timeline.sorted()]
    assert states == [
        ("0", "receive", 10.0, 11.0),
        ("2", "receive", 10.0, 11.0),
        ("3", "receive", 10.0, 10.25),
        ("3", "transmit", 10.25, 10.5),
        ("0", "compute", 11.0, 13.0),
        ("0", "transmit", 13.0, 13.5),
    ]


def test_deadline_makes_stragglers_who_stay_busy_into_the_next_round():
    net = network()
    plans = [
        ClientPlan(1, 0, down=outcome(1.0), compute_s=1.0, up=outcome(1.0)),  # arrives at 3
        ClientPlan(2, 1, down=outcome(1.0), compute_s=5.0, up=outcome(1.0)),  # would arrive at 7
    ]
    end, rows = play(net, plans, deadline_s=4.0)
    assert end == 4.0 and [r.status for r in rows] == ["received", "straggler"]
    assert net.busy(1) and not net.busy(0)  # device 1 still computes round 1's work
    assert net.unavailable(1) == "busy" and list(net.offered()) == [0, 2, 3]
    net.env.run()
    assert rows[1].arrival_s == 7.0 and not net.busy(1)


def test_a_device_that_cannot_answer_holds_the_server_until_the_deadline():
    net = network()
    plans = [ClientPlan(1, 0, down=outcome(1.0), compute_s=1.0, up=outcome(1.0)), ClientPlan(2, 1, unavailable="busy")]
    end, rows = play(net, plans, deadline_s=30.0)
    assert end == 30.0 and rows[1].status == "busy" and rows[1].energy_j == 0.0


def test_energy_ledger_by_state():
    led = ledger(2)
    net = network(2, led=led)
    _, rows = play(net, [ClientPlan(1, 0, down=outcome(1.0), compute_s=2.0, up=outcome(0.5))], deadline_s=None)
    # receive 1 s x 1 W, compute 2 s x 10 W, transmit 0.5 s x 2 W
    assert rows[0].energy_j == pytest.approx(1.0 + 20.0 + 1.0)
    assert dict(zip(STATES, led.energy_j[0])) == {"compute": 20.0, "transmit": 1.0, "receive": 1.0, "idle": 0.0}
    led.close(total_s=10.0)
    assert led.energy_j[0, STATES.index("idle")] == pytest.approx((10.0 - 3.5) * 0.5)
    assert led.energy_j[1, STATES.index("idle")] == pytest.approx(10.0 * 0.5)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 20])
def test_n_equal_transfers_on_a_shared_medium_finish_together_after_n_airtimes(n):
    net = network(n, medium="shared")
    plans = [ClientPlan(d + 1, d, down=outcome(2.0), compute_s=0.0, up=outcome(2.0)) for d in range(n)]
    end, rows = play(net, plans, deadline_s=None)
    assert [r.download_s for r in rows] == pytest.approx([2.0 * n] * n)
    assert [r.upload_s for r in rows] == pytest.approx([2.0 * n] * n)
    assert end == pytest.approx(4.0 * n)


def test_processor_sharing_against_its_formula_for_staggered_transfers():
    # capacity 8 bit/s. A (16 bits) alone 0..1 s moves 8 bits; A and B (8 bits) then share 4 bit/s
    # each: B ends at 1 + 8/4 = 3 s, A (8 left) at 3 s too; then C (8 bits, starting at 2 s) had
    # 1/3 of... see below: exact processor-sharing arithmetic
    env = simpy.Environment()
    medium = Medium(env, "shared", up_bps=8.0, down_bps=8.0)
    ends = {}

    def flow(name, start, bits):
        yield env.timeout(start)
        done, _ = medium.send(0, "up", bits, float("inf"))
        yield done
        ends[name] = env.now

    env.process(flow("A", 0.0, 24))
    env.process(flow("B", 1.0, 8))
    env.run()
    # 0-1 s: A alone at 8 bit/s (16 left); 1-3 s: A and B at 4 bit/s each (B done, A 8 left); 3-4 s: A alone
    assert ends == pytest.approx({"B": 3.0, "A": 4.0})


def test_fair_rates_give_what_a_slow_link_leaves_to_the_others():
    assert fair_rates(10.0, [1.0, 100.0, 100.0]) == pytest.approx([1.0, 4.5, 4.5])
    assert fair_rates(10.0, [20.0, 20.0]) == pytest.approx([5.0, 5.0])


class _Periods:
    """Device 0 goes offline at 1.5 s and back at 100 s; the others are always online."""

    def online(self, d, t):
        return d != 0 or not (1.5 <= t < 100.0)

    def next_change(self, d, t):
        if d != 0:
            return float("inf")
        return 1.5 if t < 1.5 else (100.0 if t < 100.0 else float("inf"))

    def online_mask(self, t):
        return np.array([self.online(d, t) for d in range(4)])


def test_a_device_going_offline_mid_compute_fails_the_round_and_stops_spending():
    led = ledger()
    net = network(availability=_Periods(), led=led)
    end, rows = play(net, [ClientPlan(1, 0, down=outcome(1.0), compute_s=2.0, up=outcome(1.0))], deadline_s=10.0)
    assert rows[0].status == "offline" and rows[0].compute_s == pytest.approx(0.5)
    assert led.energy_j[0, STATES.index("compute")] == pytest.approx(5.0)
    assert end == 10.0  # the server waited for it until the deadline
    assert ("0", "offline", 1.5, 100.0) in [tuple(r.values()) for r in net.timeline.rows]
    assert list(net.offered()) == [1, 2, 3]


def test_a_battery_runs_out_mid_round_and_the_device_stays_dead():
    led = ledger().with_batteries(np.array([3.0, np.inf, np.inf, np.inf]))
    net = network(led=led)
    # receive 1 J (1 s), then compute at 10 W: 2 J left -> dead 0.2 s into computing
    _, rows = play(net, [ClientPlan(1, 0, down=outcome(1.0), compute_s=2.0, up=outcome(1.0))], deadline_s=None)
    assert rows[0].status == "battery_depleted" and rows[0].compute_s == pytest.approx(0.2)
    assert net.unavailable(0) == "battery_depleted" and led.devices_alive(net.env.now) == 3


def test_the_server_computes_on_its_profile():
    env = simpy.Environment()
    server = Server(env, CATALOGUE["edge_server"])
    env.run(until=env.process(server.compute(3.0e10)))
    assert env.now == pytest.approx(3.0e10 / CATALOGUE["edge_server"].flops_per_s)
    assert server.energy_j == pytest.approx(env.now * CATALOGUE["edge_server"].compute_w)

"""NoNN: the filter activation network, partition merging, student budgets, the split
baseline's exchanged bytes, the inference timeline, and a tiny end-to-end run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from channels import IndependentBits, Link
from devices import DeviceProfile
from experiments.nonn.budget import WIDTH_CANDIDATES, forward_flops, size_students
from experiments.nonn.inference import InferencePlan, pooled_features, student_features
from experiments.nonn.models import WRN, NoNN, StudentSpec
from experiments.nonn.partition import activation_network, merge_communities, partition_filters
from experiments.nonn.split import SplitLayer, split_plan, split_work
from sim.nonn.system import link_systems
from sim.nonn.timeline import DeviceLoad, simulate_inference, simulate_split

# two validation images, three filters; the second row is already divided by its maximum, the
# first is twice [1, 0.5, 0] and has a negative activity that must be clipped
ACT = np.array([[2.0, 1.0, -3.0], [0.2, 1.0, 0.6]])


def test_ah_weights_by_hand():
    f = activation_network(ACT, "ah", top=None)
    # a_i a_j |a_i - a_j| summed over the images: [1, .5, 0] and [.2, 1, .6]
    expected = {(0, 1): 1 * 0.5 * 0.5 + 0.2 * 1 * 0.8, (0, 2): 0 + 0.2 * 0.6 * 0.4, (1, 2): 0 + 1 * 0.6 * 0.4}
    for (i, j), w in expected.items():
        assert f[i, j] == pytest.approx(w) and f[j, i] == pytest.approx(w)
    assert np.all(np.diag(f) == 0)


def test_ca_weights_by_hand():
    f = activation_network(ACT, "ca", top=None)
    expected = {(0, 1): 0.5 / 1.5 + 0.2 / 1.8, (0, 2): 0 + 0.12 / 1.4, (1, 2): 0 + 0.6 / 1.4}
    for (i, j), w in expected.items():
        assert f[i, j] == pytest.approx(w)


def test_top_filters_keeps_only_the_most_active_per_image():
    f = activation_network(ACT, "ah", top=2)
    # image 2 keeps filters 1 and 2 (1.0, 0.6): its (0, 1) and (0, 2) terms vanish
    assert f[0, 1] == pytest.approx(0.25) and f[0, 2] == pytest.approx(0) and f[1, 2] == pytest.approx(0.24)


def test_merge_follows_the_papers_example():
    # P0: the pooled singletons (the largest group); then {12, 14, 25, 30} into 2 partitions
    ids = iter(range(1000))
    groups = {size: [next(ids) for _ in range(size)] for size in (12, 14, 25, 30)}
    singles = [[next(ids)] for _ in range(40)]
    p0, parts = merge_communities(list(groups.values()) + singles, 2, balance=False)
    assert len(p0) == 40 and sorted(len(p) for p in parts) == [39, 42]
    assert sorted(parts[0]) == sorted(groups[30] + groups[12]) and sorted(parts[1]) == sorted(groups[25] + groups[14])
    _, even = merge_communities(list(groups.values()) + singles, 2)  # balance moves one filter
    assert sorted(len(p) for p in even) == [40, 41]


def test_balance_cuts_large_communities_into_near_equal_partitions():
    communities = [list(range(0, 41)), list(range(41, 74)), list(range(74, 88))] + [[f] for f in range(88, 220)]
    p0, parts = merge_communities(communities, 8)
    assert len(p0) == 132
    sizes = sorted(len(p) for p in parts)
    assert sizes == [11] * 8
    _, whole = merge_communities(communities, 3, balance=False)
    assert max(len(p) for p in whole) == 41  # without balance a community stays whole


def test_merge_splits_when_there_are_fewer_groups_than_students():
    # the community of 10 is P0; the pooled singletons {0, 1, 2} are cut into one per student
    p0, parts = merge_communities([[0], [1], [2], list(range(3, 13))], 3)
    assert p0 == list(range(3, 13)) and parts == [[0], [1], [2]]
    # too few filters outside P0 for 3 students: P0 gives up half of itself
    p0, parts = merge_communities([[0], list(range(1, 9))], 3, balance=False)
    assert p0 == [1, 2, 3, 4] and parts == [[5, 6], [7, 8], [0]]
    everything = sorted(list(p0) + [f for p in parts for f in p])
    assert everything == list(range(9))  # disjoint and complete


def test_partition_pipeline_is_disjoint_and_seeded():
    rng = np.random.default_rng(0)
    act = rng.random((60, 40)) ** 3
    a = partition_filters(act, 3, top=10, percentile=90, seed=5)
    b = partition_filters(act, 3, top=10, percentile=90, seed=5)
    assert a == b and len(a.parts) == 3
    filters = list(a.p0) + a.order
    assert sorted(filters) == list(range(40))


def test_budget_picks_the_widest_student_that_fits():
    sizes, shape = [20, 18], (1, 8, 8)
    budget = 40_000
    spec, width, costs = size_students(
        10, sizes, shape, 10, memory_budget_bytes=budget, bytes_per_param=1.0, flop_budget=1e9
    )
    assert all(c.fits and c.memory_bytes <= budget for c in costs)
    wider = WIDTH_CANDIDATES[WIDTH_CANDIDATES.index(width) + 1]
    _, _, over = size_students(
        10, sizes, shape, 10, memory_budget_bytes=budget, bytes_per_param=1.0, flop_budget=1e9, width=wider
    )
    assert not all(c.fits for c in over)
    # 4 bytes per parameter (float32) needs a narrower student for the same budget
    _, w32, _ = size_students(10, sizes, shape, 10, memory_budget_bytes=budget, bytes_per_param=4.0, flop_budget=1e9)
    assert w32 < width


def test_budget_that_nothing_meets_is_reported_not_hidden():
    spec, width, costs = size_students(
        10, [30], (1, 8, 8), 10, memory_budget_bytes=100, bytes_per_param=1.0, flop_budget=1e9
    )
    assert width == WIDTH_CANDIDATES[0] and not costs[0].fits and costs[0].memory_bytes > 100


def test_student_params_count_the_replicated_common_group():
    model = NoNN(StudentSpec(10, (4, 8, 8)), [3, 5], 1, 10)
    common = sum(p.numel() for p in model.common.parameters())
    assert model.student_params(0) == common + sum(p.numel() for p in model.branches[0].parameters())
    logits, maps = model.forward_with_maps(torch.zeros(2, 1, 8, 8))
    assert logits.shape == (2, 10) and [m.shape[1] for m in maps] == [3, 5]


def test_split_exchanges_the_real_slices():
    torch.manual_seed(0)
    model = WRN(10, (4, 8, 8), 1, 10)  # stem 16 channels; one block per group
    layers, pooled = split_work(model, torch.randn(1, 1, 8, 8), 2)
    names = [layer.name for layer in layers]
    assert names == [
        "stem",
        "groups.0.0.conv1",
        "groups.0.0.conv2",
        "groups.0.0.shortcut",
        "groups.1.0.conv1",
        "groups.1.0.conv2",
        "groups.1.0.shortcut",
        "groups.2.0.conv1",
        "groups.2.0.conv2",
        "groups.2.0.shortcut",
    ]
    # bytes of each device's half of each convolution's input (float32), sent to the other device
    per_layer = [0, 8 * 64 * 4, 2 * 64 * 4, 0, 2 * 64 * 4, 4 * 16 * 4, 0, 4 * 16 * 4, 4 * 4 * 4, 0]
    assert [layer.exchange_bytes for layer in layers] == [(b, b) for b in per_layer]
    assert pooled == (16, 16)
    # three devices: uneven channel slices (16 -> 6, 5, 5)
    layers3, pooled3 = split_work(model, torch.randn(1, 1, 8, 8), 3)
    assert layers3[1].exchange_bytes == (6 * 256, 5 * 256, 5 * 256) and pooled3 == (12, 12, 8)
    assert sum(sum(layer.flops) for layer in layers3) == sum(sum(layer.flops) for layer in layers)
    # the shares' FLOPs add up to what FlopCounterMode counts for the whole network (minus the FC)
    x = torch.randn(1, 1, 8, 8)
    fc_flops = forward_flops(model.fc, torch.zeros(1, 8))
    assert sum(sum(layer.flops) for layer in layers) == forward_flops(model, x) - fc_flops
    plan = split_plan(model, x, 2)  # with the FC at the aggregator and the bytes the devices exchange
    assert plan.fc_flops == fc_flops == 2 * 8 * 10
    assert plan.exchanged_bytes == sum(2 * b for b in per_layer)  # each of 2 devices sends its slice once


def _profile(rate: float) -> DeviceProfile:
    return DeviceProfile("test", 1 << 20, rate, 2.0, 1.0, 0.5, 0.1, "test")


# 1 s per message; payload time negligible (1 Tbit/s)
LINK = Link(bandwidth_bps=1e12, latency_s=1.0, errors=IndependentBits(0.0), packet_bytes=1000, header_bytes=0)
PLAN = InferencePlan(common_flops=2, branch_flops=(3, 5), image_bytes=4, feature_bytes=(4, 4), fc_flops=0)


def test_inference_timeline_by_hand():
    rng = np.random.default_rng(0)
    dev = _profile(1.0)  # 1 FLOP/s: compute seconds = FLOPs
    systems = link_systems(LINK, _profile(1e9))
    out = simulate_inference(PLAN, [DeviceLoad(dev, (0,)), DeviceLoad(dev, (1,))], systems([dev, dev]), rng)
    # d0: image 0-1, compute 2+3 -> 6, up 6-7; d1: image 1-2, compute 2+5 -> 9, up 9-10
    assert out.latency_s == pytest.approx(10.0, abs=1e-6) and set(out.arrived) == {0, 1}
    assert [t.compute_s for t in out.devices] == [5.0, 7.0]
    # d0: compute 5 s at 2 W, receive 1 s at 0.5 W, transmit 1 s at 1 W, idle the other 3 s at 0.1 W
    assert out.devices[0].energy_j == pytest.approx(5 * 2.0 + 1 * 0.5 + 1 * 1.0 + 3 * 0.1, rel=1e-6)
    # one device runs both students: the common part once; each student's features sent when ready
    out = simulate_inference(PLAN, [DeviceLoad(dev, (0, 1))], systems([dev]), rng)
    assert out.latency_s == pytest.approx(13.0, abs=1e-6) and out.devices[0].compute_flops == 10
    # a failed device: the aggregator waits for its deadline, then uses what arrived
    out = simulate_inference(
        PLAN,
        [DeviceLoad(dev, (0,)), DeviceLoad(dev, (1,))],
        systems([dev, dev]),
        rng,
        failed=frozenset({1}),
        deadline_s=20.0,
    )
    assert out.latency_s == pytest.approx(20.0) and set(out.arrived) == {0} and out.devices[1].energy_j == 0


def test_split_timeline_by_hand():
    rng = np.random.default_rng(0)
    dev = _profile(1.0)
    layers = [SplitLayer("a", (2, 2), (0, 0)), SplitLayer("b", (3, 3), (8, 8))]
    out = simulate_split(layers, (4, 4), 4, 0, link_systems(LINK, _profile(1e9))([dev, dev]), rng)
    # images at 1 and 2; layer a: d0 1-3, d1 2-4; exchange (each device's own radio): d0 sends
    # 3-4, d1 sends 4-5; layer b: d1 has d0's slice at 4 -> 4-7, d0 has d1's at 5 -> 5-8; results
    # to the server one at a time: d1 7-8, d0 8-9 -> 9
    assert out.latency_s == pytest.approx(9.0, abs=1e-6)
    assert [t.compute_s for t in out.devices] == [5.0, 5.0]
    assert [t.receive_s for t in out.devices] == pytest.approx([1.0, 1.0], abs=1e-6)


def test_lossy_link_gives_up_and_the_student_is_missing():
    bad = Link(
        bandwidth_bps=1e6, latency_s=0.0, errors=IndependentBits(0.5), packet_bytes=64, header_bytes=0, max_attempts=1
    )
    dev = _profile(1.0)
    system = link_systems(bad, _profile(1e9))([dev])
    out = simulate_inference(PLAN, [DeviceLoad(dev, (0,))], system, np.random.default_rng(1), deadline_s=30.0)
    assert out.arrived == {} and out.latency_s == pytest.approx(30.0)


def test_a_device_computes_on_its_copy_of_the_image():
    torch.manual_seed(0)
    model = NoNN(StudentSpec(10, (4, 8, 8)), [3, 5], 1, 10).eval()
    x = torch.randn(4, 1, 8, 8)
    pooled = pooled_features(model, x)
    got = student_features(model, x[2:3].numpy().copy(), (1,))
    assert list(got) == [1] and np.allclose(got[1], pooled[1][2], atol=1e-6)


TINY = [
    "+experiment=nonn",
    "workload.teacher_depth=10",
    "workload.teacher_width=0.5",
    "workload.teacher_epochs=1",
    "workload.student_depth=10",
    "workload.student_epochs=1",
    "workload.num_students=3",
    "workload.timing_images=2",
    "workload.memory_budget_bytes=20000",
    "workload.flop_budget=1e6",
    "workload.top_filters=8",
    "workload.edge_percentile=80",
    "workload.beta_search=[100]",
    "workload.at_beta_search=[]",
    "workload.calibrate=false",
    "progress=false",
]


def test_tiny_end_to_end_is_deterministic_through_the_cache(run_sim, tmp_path):
    outs = []
    for i in range(2):
        d = tmp_path / f"run{i}"
        res = run_sim(*TINY, f"cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={d}")
        assert res.returncode == 0, res.stderr[-2000:]
        outs.append(d)
    names = [
        "partition.csv",
        "students.csv",
        "comparison.csv",
        "inference.csv",
        "inference_devices.csv",
        "robustness.csv",
        "beta_search.csv",
        "summary.csv",
    ]
    for name in names:
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name
    assert (outs[0] / "robustness.png").exists() and (outs[0] / "latency.png").exists()
    assert not (outs[0] / "calibration.csv").exists()
    s = pd.read_csv(outs[0] / "summary.csv").iloc[0]
    assert s["num_students"] == 3 and s["speedup_vs_split"] > 1
    # P0 kept the teacher's validation accuracy within epsilon (the paper's problem 2)
    assert s["p0_constraint_held"] and abs(s["delta_val_accuracy"]) < s["p0_epsilon"] == 0.01
    assert s["p0_groups_refused"] >= 0
    rob = pd.read_csv(outs[0] / "robustness.csv")
    assert list(rob["subsets"]) == [3, 3, 1]  # C(3, m) subsets of active devices
    assert (rob["accuracy_min"] <= rob["accuracy_mean"]).all() and (rob["accuracy_mean"] <= rob["accuracy_max"]).all()
    comp = pd.read_csv(outs[0] / "comparison.csv")
    assert list(comp["model"]) == ["teacher", "NoNN", "NoNN, KD only", "KD student", "ATKD student"]
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 5  # teacher, 2 NoNNs, 2 single students


def test_bad_nonn_setting_is_one_line_and_writes_nothing(run_sim, tmp_path):
    res = run_sim("+experiment=nonn", "workload.rule=xx", f"hydra.run.dir={tmp_path / 'r'}")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1] == "error: workload.rule='xx': allowed: ah, ca"
    assert not list(tmp_path.rglob("*.csv"))


def test_calibration_against_the_papers_tables():
    from omegaconf import OmegaConf

    from devices import CATALOGUE
    from sim.config import ChannelConfig
    from sim.net import build_link
    from sim.nonn.calibration import PAPER_TABLE7, calibration

    from ..conftest import CONF_DIR

    wired = build_link(ChannelConfig(**OmegaConf.to_container(OmegaConf.load(CONF_DIR / "channel" / "wired.yaml"))))
    df = calibration(wired, CATALOGUE["edge_server"], 0).set_index(["deployment", "device"])
    for device in ("rpi3_400mhz", "odroid_xu4"):
        # fitted: each device's FLOP rate and per-message cost come from its 2-student row
        two = df.loc[("NoNN-2S", device)]
        assert two["sim_compute_ms"] == pytest.approx(PAPER_TABLE7[(device, 2)][0], rel=1e-4)
        assert two["sim_communication_ms"] == pytest.approx(PAPER_TABLE7[(device, 2)][1], rel=1e-3)
        # checks: the 8-student rows (the Odroid's communication was 3x the paper's with one
        # per-message cost for both boards)
        eight = df.loc[("NoNN-8S", device)]
        assert abs(eight["latency_error_pct"]) < 5
        assert eight["sim_communication_ms"] == pytest.approx(PAPER_TABLE7[(device, 8)][1], rel=0.2)
    pi_split = df.loc[("split ATKD WRN40-2 over 8", "rpi3_400mhz"), "sim_latency_ms"]
    assert pi_split > 5 * df.loc[("NoNN-2S", "rpi3_400mhz"), "sim_latency_ms"]
    assert df.loc[("split ATKD WRN40-2 over 8", "rpi3_400mhz_pytorch"), "sim_latency_ms"] > pi_split
    # figure 7: one Odroid runs j of 8 students; the latency is lowest near the middle (paper: j = 4)
    fig7 = [df.loc[(f"NoNN-8S, Odroid runs {j}", "odroid_xu4 + rpi3_400mhz"), "sim_latency_ms"] for j in range(1, 9)]
    assert int(np.argmin(fig7)) + 1 in (4, 5)


def test_raw_link_flips_bits_in_the_real_payloads(run_sim, tmp_path):
    d = tmp_path / "raw"
    res = run_sim(
        *TINY,
        "workload.num_students=2",
        "workload.baselines=false",
        "workload.split_model=teacher",
        "channel.mode=raw",
        "channel.ber=0.002",
        f"cache_dir={tmp_path / 'cache'}",
        f"hydra.run.dir={d}",
    )
    assert res.returncode == 0, res.stderr[-2000:]
    s = pd.read_csv(d / "summary.csv").iloc[0]
    # ~360 images x (256-byte image + 2 feature payloads) x 8 bits x 0.002
    assert s["nonn_bits_flipped"] > 1000
    assert s["nonn_delivered_accuracy"] != s["nonn_accuracy"]


def test_sweep_over_link_quality_gives_one_comparison_and_reuses_the_cache(run_sim, tmp_path):
    res = run_sim(
        "-m",
        *TINY,
        "workload.num_students=2",
        "workload.baselines=false",
        "workload.split_model=teacher",
        "channel.mode=raw",
        "channel.ber=0,0.001",
        f"cache_dir={tmp_path / 'cache'}",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
    )
    assert res.returncode == 0, res.stderr[-2000:]
    table = pd.read_csv(tmp_path / "sweep" / "comparison.csv")
    assert list(table["channel_ber"]) == [0, 0.001] and list(table["job"]) == [0, 1]
    assert table["nonn_bits_flipped"].iloc[0] == 0 < table["nonn_bits_flipped"].iloc[1]
    assert table["nonn_accuracy"].nunique() == 1  # the same trained students in both jobs
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 2  # teacher and NoNN, trained once

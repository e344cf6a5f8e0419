"""NAIR: importance (eq. 8), slices and their bytes, selective assembly (algorithm 1), the
re-tuning weights (eq. 11), the link's slice count, and the job end to end."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from channels import IndependentBits, Link, flip_bits, transfer
from devices import CATALOGUE, fleet_of
from experiments.common.metrics import count_params
from experiments.nair.analysis import corruption_table
from experiments.nair.codecs import JPEG_QUALITIES, decode_raw, encode_raw, full_payload_bytes, jpeg, quant_bytes
from experiments.nair.model import build_splitnet, narrow_tail
from experiments.nair.receive import decode_delivered, received_units
from experiments.nair.slicing import (
    SlicePlan,
    assemble,
    decode_slice,
    encode_slices,
    importance_order,
    prefix_masks,
    unit_importance,
    units_in_budget,
)
from experiments.nair.training import clio_alpha, nair_weights
from sim.config import Config, ConfigError
from sim.jobs import default_config, run
from sim.nair.methods import METHODS
from sim.nair.timeline import airtime_s, simulate_link
from sim.net.build import plain_network


def _play(link: Link, episodes, rng_for):
    """(slices sent, slices received by each budget) of `episodes` on one device over `link`."""
    run = simulate_link(*plain_network(fleet_of([CATALOGUE["rpi3_400mhz"]]), link), episodes, rng_for)
    return run.log, run.got


def _conv_with_filter_norms(norms: list[float], cin: int = 3) -> nn.Conv2d:
    conv = nn.Conv2d(cin, len(norms), 1, bias=False)
    with torch.no_grad():
        for c, v in enumerate(norms):
            conv.weight[c] = v / cin  # every weight of filter c equal: ||F_c||_1 = v
            conv.weight[c, 0] *= -1  # a negative weight: the L1 norm takes its magnitude
    return conv


def test_importance_is_the_l1_norm_of_each_unit_filters_and_orders_descending():
    conv = _conv_with_filter_norms([1.0, 4.0, 2.0, 8.0, 3.0, 3.0])
    r = unit_importance(conv, None, channels_per_unit=1)
    assert torch.allclose(r, torch.tensor([1.0, 4.0, 2.0, 8.0, 3.0, 3.0]))
    assert importance_order(r).tolist() == [3, 1, 4, 5, 2, 0]  # a tie keeps the lower index first
    r2 = unit_importance(conv, None, channels_per_unit=2)  # units {0,1}, {2,3}, {4,5}
    assert torch.allclose(r2, torch.tensor([5.0, 10.0, 6.0]))
    assert importance_order(r2).tolist() == [1, 2, 0]
    with pytest.raises(ValueError, match="channels_per_unit"):
        unit_importance(conv, None, channels_per_unit=4)


def test_importance_folds_the_batch_norm_scale():
    conv = _conv_with_filter_norms([1.0, 1.0, 1.0])
    bn = nn.BatchNorm2d(3)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([0.5, -3.0, 1.0]))
        bn.running_var.copy_(torch.tensor([1.0, 1.0, 4.0]) - bn.eps)
    folded = unit_importance(conv, bn, 1, fold_bn=True)
    assert torch.allclose(folded, torch.tensor([0.5, 3.0, 0.5]))
    assert importance_order(folded).tolist() == [1, 0, 2]
    assert torch.allclose(unit_importance(conv, bn, 1, fold_bn=False), torch.ones(3))


def test_nair_weights_follow_algorithm_2():
    imp = torch.tensor([1.0, 3.0, 2.0, 4.0])
    order = importance_order(imp)  # [3, 1, 2, 0]: sorted 4, 3, 2, 1; cumulative 4, 7, 9, 10
    w = nair_weights(imp, order, w_non=2.0)
    assert torch.allclose(w, torch.tensor([0.36, 0.09, 0.01, 1.0]))
    assert torch.allclose(nair_weights(imp, order, w_non=1.0), torch.tensor([0.6, 0.3, 0.1, 1.0]))
    assert torch.allclose(clio_alpha(4, 0.0), torch.ones(4))
    a = clio_alpha(4, 1.0)
    assert math.isclose(float(a.mean()), 1.0, rel_tol=1e-6) and bool((a[:-1] > a[1:]).all())


def test_prefix_masks_keep_the_first_units_in_order():
    m = prefix_masks([2, 0, 1], channels=6, channels_per_unit=2)
    assert m.tolist() == [[0, 0, 0, 0, 1, 1], [1, 1, 0, 0, 1, 1], [1, 1, 1, 1, 1, 1]]


def _received(o: torch.Tensor, plan: SlicePlan, image: int, slices: list[int]) -> dict[int, np.ndarray]:
    payload = encode_slices(o, plan)
    index = None
    out = {}
    for s in slices:
        idx, values = decode_slice(payload[s][image].copy(), plan, first=s == 0)
        index = idx if idx is not None else index
        unit = int(index[s]) if plan.send_index else int(plan.order[s])
        out[unit] = values
    return out


def test_selective_assembly_round_trip_is_exact_when_every_slice_arrives():
    g = torch.Generator().manual_seed(0)
    o = torch.randn(3, 8, 4, 4, generator=g) * 5
    plan = SlicePlan((8, 4, 4), 2, 32, order=[2, 0, 3, 1], send_index=True)
    assert plan.slice_sizes() == [4 + 2 * 16 * 4] + [2 * 16 * 4] * 3  # the index vector rides on slice 1
    for image in range(3):
        rebuilt = assemble(_received(o, plan, image, [0, 1, 2, 3]), (8, 4, 4), 2)
        assert torch.equal(rebuilt, o[image])


def test_missing_slices_are_zero_padded_in_their_original_positions():
    o = torch.arange(1, 1 + 2 * 8 * 2 * 2, dtype=torch.float32).reshape(2, 8, 2, 2)
    plan = SlicePlan((8, 2, 2), 2, 32, order=[3, 1, 0, 2], send_index=True)
    rebuilt = assemble(_received(o, plan, 1, [0, 1]), (8, 2, 2), 2)  # units 3 and 1 arrived
    for unit in range(4):
        ch = slice(2 * unit, 2 * unit + 2)
        expected = o[1, ch] if unit in (3, 1) else torch.zeros(2, 2, 2)
        assert torch.equal(rebuilt[ch], expected)


def test_quantised_slices_decode_within_half_a_step():
    o = torch.linspace(-2.0, 6.0, 2 * 4 * 3 * 3).reshape(2, 4, 3, 3)
    for bits in (3, 8, 12):
        plan = SlicePlan((4, 3, 3), 1, bits, order=[0, 1, 2, 3], send_index=False)
        assert plan.data_bytes == (9 * bits + 7) // 8 + 8
        got = assemble(_received(o, plan, 1, [0, 1, 2, 3]), (4, 3, 3), 1)
        steps = (o[1].amax((1, 2)) - o[1].amin((1, 2))) / ((1 << bits) - 1)
        assert bool(((got - o[1]).abs() <= steps[:, None, None] / 2 + 1e-5).all())


def test_slice_count_for_a_budget_and_rate():
    link = Link(
        bandwidth_bps=250e3, latency_s=0.01, errors=IndependentBits(0.0), mode="arq", packet_bytes=256, header_bytes=16
    )
    sizes = [512] * 8  # a 512-byte slice: 2 packets, 4352 bits, 17.408 ms at 250 kbit/s
    budgets = [0.02, 0.03, 0.05, 0.2]
    _, got = _play(link, [(0.0, sizes, budgets)], lambda e: np.random.default_rng(e))
    counts = [len(got[(0, b)]) for b in range(len(budgets))]
    # by hand: slice j (1-based) arrives at 0.01 + j * 0.017408 s
    assert counts == [0, 1, 2, 8]
    assert counts == [units_in_budget(b, 512, 0, 8, 250e3, 256, 16, 0.01) for b in budgets]
    # head compute first, and a slower link: 125 kbit/s, 1 ms of head -> 0.035408 s per slice
    slow = Link(bandwidth_bps=125e3, latency_s=0.01, errors=IndependentBits(0.0), packet_bytes=256, header_bytes=16)
    _, got = _play(slow, [(0.001, sizes, [0.08, 0.0818])], lambda e: np.random.default_rng(e))
    assert [len(got[(0, 0)]), len(got[(0, 1)])] == [1, 2]


def test_slices_go_back_to_back_and_arrive_one_latency_after_their_airtime():
    link = Link(
        bandwidth_bps=250e3, latency_s=0.01, errors=IndependentBits(0.0), mode="raw", packet_bytes=256, header_bytes=16
    )
    sizes = [600, 512, 512]
    log, got = _play(link, [(0.002, sizes, [1.0]), (0.002, sizes, [1.0])], lambda e: np.random.default_rng(e))
    assert [(ev.episode, ev.slice) for ev in log] == [(e, s) for e in range(2) for s in range(3)]
    for e in range(2):
        evs = [ev for ev in log if ev.episode == e]
        assert math.isclose(evs[0].start_s, 0.002)  # after the head's compute
        for ev, size in zip(evs, sizes):
            assert math.isclose(ev.end_s - ev.start_s, airtime_s(link, size))
            assert math.isclose(ev.arrival_s - ev.end_s, link.latency_s)
        for a, b in zip(evs, evs[1:]):
            assert math.isclose(b.start_s, a.end_s)
        assert got[(e, 0)] == [0, 1, 2]


def test_bit_errors_reach_the_payload_in_raw_mode():
    link = Link(
        bandwidth_bps=1e6, latency_s=0.0, errors=IndependentBits(1e-3), mode="raw", packet_bytes=256, header_bytes=16
    )
    o = torch.linspace(-1.0, 1.0, 2 * 4 * 16 * 16).reshape(2, 4, 16, 16)
    plan = SlicePlan((4, 16, 16), 1, 32, order=[0, 1, 2, 3], send_index=False)
    payload = encode_slices(o, plan)
    assert plan.slice_sizes() == [1024] * 4
    log, got = _play(link, [(0.0, plan.slice_sizes(), [1.0])], lambda e: np.random.default_rng(7))
    assert got[(0, 0)] == [0, 1, 2, 3]
    assert sum(ev.flips.size for ev in log) > 0
    decoded = decode_delivered(payload, plan, [(0, ev.slice, ev.flips) for ev in log])
    for ev in log:
        clean = o[0, ev.slice].numpy()
        got_values = decoded[(0, ev.slice)][1][0]
        assert np.array_equal(got_values, clean) == (ev.flips.size == 0), ev.slice


def test_received_units_follow_the_index_vector_and_drop_what_it_cannot_place():
    o = torch.arange(1, 1 + 4 * 2 * 2, dtype=torch.float32).reshape(1, 4, 2, 2)
    plan = SlicePlan((4, 2, 2), 1, 32, order=[2, 0, 3, 1], send_index=True)
    payload = encode_slices(o, plan)
    flips_index_3 = np.array([3 * 8 + 2])  # byte 3 of slice 0 is slice 3's index entry: 1 -> past the last unit
    decoded = decode_delivered(
        payload,
        plan,
        [(0, 0, flips_index_3), (0, 1, np.array([], dtype=np.int64)), (0, 3, np.array([], dtype=np.int64))],
    )
    assert sorted(received_units(decoded, plan, 0, [0, 1, 3])) == [0, 2]  # slice 3's unit lost with its index entry
    assert received_units(decoded, plan, 0, [1, 3]) == {}  # without slice 0, no positions
    native = SlicePlan((4, 2, 2), 1, 32, order=[0, 1, 2, 3], send_index=False)
    decoded = decode_delivered(encode_slices(o, native), native, [(0, s, np.array([], dtype=np.int64)) for s in (1, 3)])
    got = received_units(decoded, native, 0, [1, 3])
    assert sorted(got) == [1, 3] and np.array_equal(got[3][0], o[0, 3].numpy())


def test_raw_quantisation_fits_the_budget_and_round_trips():
    img = np.linspace(0.0, 1.0, 64, dtype=np.float32).reshape(1, 8, 8)
    assert encode_raw("raw_quant", img, lambda nbytes: False) == b""
    msg = encode_raw("raw_quant", img, lambda nbytes: nbytes <= quant_bytes(64, 5))
    assert msg[0] == 5 and len(msg) == 1 + quant_bytes(64, 5)
    back = decode_raw("raw_quant", np.frombuffer(msg, dtype=np.uint8).copy(), (1, 8, 8))
    assert np.abs(back - img).max() <= 0.5 / 31 + 1e-6
    bad = np.frombuffer(msg, dtype=np.uint8).copy()
    bad[0] = 0  # a header naming no bit count: the receiver keeps zeros
    assert decode_raw("raw_quant", bad, (1, 8, 8)) is None
    assert full_payload_bytes("raw_quant", img[None]) == 64.0


def test_raw_quantisation_header_naming_more_bits_than_sent_gives_zeros():
    img = np.linspace(0.0, 1.0, 64, dtype=np.float32).reshape(1, 8, 8)
    msg = encode_raw("raw_quant", img, lambda nbytes: nbytes <= quant_bytes(64, 3))
    buf = np.frombuffer(msg, dtype=np.uint8).copy()
    buf[0] = 5
    assert decode_raw("raw_quant", buf, (1, 8, 8)) is None


def test_jpeg_picks_the_best_quality_that_fits_and_survives_garbage():
    img = np.random.default_rng(0).random((1, 8, 8)).astype(np.float32)
    sizes = {q: len(jpeg(img, q)) for q in JPEG_QUALITIES}
    room = sizes[50]
    msg = encode_raw("raw_jpeg", img, lambda nbytes: nbytes <= room)
    best = next(q for q in JPEG_QUALITIES if sizes[q] <= room)
    assert msg == jpeg(img, best)
    assert decode_raw("raw_jpeg", np.frombuffer(msg, dtype=np.uint8).copy(), (1, 8, 8)).shape == (1, 8, 8)
    garbage = np.zeros(len(msg), dtype=np.uint8)
    assert not decode_raw("raw_jpeg", garbage, (1, 8, 8)).any()


def test_figure5_sends_each_split_over_the_link_at_each_bit_error_rate():
    """corruption_mode=ber: each image's output at a split is one message in the job's encoding,
    its bits flipped by the link's own transfer at that BER, decoded as the receiver does."""
    net = build_splitnet(1, 10, 16, seed=0).eval()
    x = torch.rand(12, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    y = torch.arange(12) % 10
    rates = [0.001, 0.02, 0.5]
    links = []

    def link_at(ber: float) -> Link:
        links.append(ber)
        return Link(250e3, 0.01, IndependentBits(ber), mode="raw", packet_bytes=256, header_bytes=16)

    seed_for = lambda k, rate: 1000 * k + rates.index(rate)  # noqa: E731
    t = corruption_table(net, x, y, rates, "ber", seed_for, link_at=link_at, bits=8)
    assert links == rates * 9 and t["corruption_mode"].eq("ber").all()
    pd.testing.assert_frame_equal(t, corruption_table(net, x, y, rates, "ber", seed_for, link_at=link_at, bits=8))
    k, rate = 3, 0.02  # by hand: the same bytes through the same link and generator
    with torch.no_grad():
        o = net.forward_to(x, k)
        plan = SlicePlan(o.shape[1:], o.shape[1], 8, [0], False)
        [payload] = encode_slices(o, plan)
        rng, got, flips = np.random.default_rng(seed_for(k, rate)), torch.zeros_like(o), 0
        for i in range(len(x)):
            buf = payload[i].copy()
            pos = transfer(link_at(rate), buf.size, rng).flip_positions
            flip_bits(buf, pos)
            flips += pos.size
            got[i] = torch.from_numpy(decode_slice(buf, plan, first=False)[1])
        acc = float((net.forward_from(got, k).argmax(1) == y).float().mean())
    row = t[(t.split == k) & (t.error_rate == rate)].iloc[0]
    assert row.payload_bytes == plan.data_bytes == o[0].numel() + 8 and flips > 0
    assert row.accuracy == pytest.approx(acc) and row.mean_hits == pytest.approx(flips / len(x))
    hits = t.pivot(index="split", columns="error_rate", values="mean_hits")
    assert hits.index.tolist() == list(range(9)) and (hits[0.0] == 0).all() and (hits[0.001] < hits[0.5]).all()
    erased = corruption_table(net, x, y, [0.5], "erase", seed_for)  # the element-loss option
    assert erased["mean_hits"].iloc[1] == pytest.approx(0.5 * 64, rel=0.2)  # the input: 64 elements


def test_a_range_made_nan_by_bit_errors_decodes_without_a_warning():
    plan = SlicePlan((1, 2, 2), 1, 8, [0], False)
    [payload] = encode_slices(torch.arange(4.0).reshape(1, 1, 2, 2), plan)
    buf = payload[0].copy()
    buf[:4] = [0x01, 0x00, 0x80, 0x7F]  # the minimum becomes a signalling NaN
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, values = decode_slice(buf, plan, first=False)
    assert np.isfinite(values).all()


def test_multi_tail_has_one_narrow_tail_per_width():
    net = build_splitnet(1, 10, 16, seed=0)
    c = net.channels(3)
    tails = [narrow_tail(net, 3, w) for w in range(2, c + 1, 2)]
    o = net.forward_to(torch.zeros(2, 1, 8, 8), 3)
    for j, t in enumerate(tails):
        assert t(o[:, : 2 * (j + 1)]).shape == (2, 10)
    single = count_params(net.tail(3))
    assert count_params(tails[-1]) == single
    assert sum(count_params(t) for t in tails) > 6 * single


TINY = {"epochs": 1, "retune_epochs": 1, "train_samples": 60, "test_samples": 20}


def _tiny_cfg() -> Config:
    cfg = default_config("nair")
    cfg.progress = False
    cfg.cache_dir = None
    cfg.channel.bandwidth_bps = 250e3
    cfg.channel.mode = "raw"
    cfg.channel.ber = 1e-4
    for key, value in TINY.items():
        setattr(cfg.workload, key, value)
    cfg.workload.latencies_s = [0.03, 0.16]
    cfg.workload.corruption_rates = [0.5]
    return cfg


def test_same_config_gives_identical_csvs_and_bad_settings_write_nothing(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    run(_tiny_cfg(), a)
    run(_tiny_cfg(), b)
    files = sorted(p.name for p in a.glob("*.csv"))
    assert "table2.csv" in files and "summary.csv" in files
    for name in files:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    for setting, value in [
        ("split", 0),
        ("channels_per_unit", 3),
        ("bits_per_element", 20),
        ("latencies_s", []),
        ("clio_training", "mean"),
        ("corruption_mode", "flip"),
        ("corruption_rates", [0.01, 0.6]),  # a bit error rate above 1/2
    ]:
        cfg = _tiny_cfg()
        setattr(cfg.workload, setting, value)
        with pytest.raises(ConfigError, match=rf"workload\.{setting}="):
            run(cfg, tmp_path / setting)
        assert not (tmp_path / setting).exists()


def test_tiny_end_to_end_run(run_sim, tmp_path):
    out = tmp_path / "run"
    overrides = [f"workload.{k}={v}" for k, v in TINY.items()]
    proc = run_sim(
        "+experiment=nair",
        *overrides,
        "cache_dir=null",
        "progress=false",
        "workload.split=5",
        "workload.channels_per_unit=4",
        "workload.bits_per_element=8",
        f"hydra.run.dir={out}",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = pd.read_csv(out / "table2.csv")
    assert table["method"].tolist() == list(METHODS)
    budgets = [0.03, 0.05, 0.07, 0.09, 0.12, 0.16]
    assert list(table.columns) == ["method", *[f"accuracy_at_{b:g}_s" for b in budgets], "accuracy_overall"]
    assert table.drop(columns="method").apply(lambda c: c.between(0, 1)).all().all()
    summary = pd.read_csv(out / "summary.csv")
    assert (summary["split"] == 5).all() and (summary["bandwidth_bps"] == 250e3).all()
    cost = pd.read_csv(out / "cost.csv").set_index("method")
    assert cost.loc["clio_mt", "num_tails"] == 24 // 4
    assert cost.loc["clio_mt", "tail_params"] > cost.loc["nair", "tail_params"]
    assert cost.loc["nair", "head_flops"] > 0
    fig5 = pd.read_csv(out / "corruption.csv")
    assert sorted(fig5["split"].unique()) == list(range(9))
    assert (fig5["corruption_mode"] == "ber").all()
    assert (fig5["payload_bytes"] == fig5["elements"] + 8).all()  # 8 bits per element and the range
    hit = fig5[fig5["error_rate"] > 0]
    assert hit["error_rate"].tolist() == [0.0001, 0.001, 0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5] * 9
    expected = 8 * hit["payload_bytes"] * hit["error_rate"]  # flipped bits per image at that BER
    assert hit["mean_hits"].sum() / expected.sum() == pytest.approx(1.0, abs=0.03)
    for name in (
        "latency.csv",
        "ablation.csv",
        "importance.csv",
        "comparison.csv",
        "accuracy_vs_latency.png",
        "accuracy_vs_corruption.png",
        *[f"timeline_{m}.{ext}" for m in METHODS for ext in ("csv", "png")],
    ):
        assert (out / name).exists(), name
    timeline = pd.read_csv(out / "timeline_nair.csv")
    assert list(timeline.columns) == ["device", "state", "start_s", "end_s"]
    assert set(zip(timeline["device"], timeline["state"])) == {
        ("device", "compute"),
        ("device", "transmit"),
        ("server", "compute"),
    }

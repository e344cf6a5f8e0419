"""NAIR: importance (eq. 8), slices and their bytes, selective assembly (algorithm 1), the
re-tuning weights (eq. 11), the link's slice count, and the job end to end."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from channels import IndependentBits, Link
from experiments.nair.model import build_splitnet, count_parameters, narrow_tail
from experiments.nair.slicing import (SlicePlan, assemble, decode_slice, encode_slices, importance_order, prefix_masks,
                                      unit_importance, units_in_budget)
from experiments.nair.training import clio_alpha, nair_weights
from sim.config import Config, ConfigError
from sim.jobs import default_config
from sim.jobs import run
from sim.nair.job import METHODS, simulate_link


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
    link = Link(bandwidth_bps=250e3, latency_s=0.01, errors=IndependentBits(0.0), mode="arq", packet_bytes=256,
                header_bytes=16)
    sizes = [512] * 8  # a 512-byte slice: 2 packets, 4352 bits, 17.408 ms at 250 kbit/s
    budgets = [0.02, 0.03, 0.05, 0.2]
    _, got = simulate_link(link, [(0.0, sizes, budgets)], lambda e: np.random.default_rng(e))
    counts = [len(got[(0, b)]) for b in range(len(budgets))]
    # by hand: slice j (1-based) arrives at 0.01 + j * 0.017408 s
    assert counts == [0, 1, 2, 8]
    assert counts == [units_in_budget(b, 512, 0, 8, 250e3, 256, 16, 0.01) for b in budgets]
    # head compute first, and a slower link: 125 kbit/s, 1 ms of head -> 0.035408 s per slice
    slow = Link(bandwidth_bps=125e3, latency_s=0.01, errors=IndependentBits(0.0), packet_bytes=256, header_bytes=16)
    _, got = simulate_link(slow, [(0.001, sizes, [0.08, 0.0818])], lambda e: np.random.default_rng(e))
    assert [len(got[(0, 0)]), len(got[(0, 1)])] == [1, 2]


def test_bit_errors_reach_the_payload_in_raw_mode():
    link = Link(bandwidth_bps=1e6, latency_s=0.0, errors=IndependentBits(1e-3), mode="raw", packet_bytes=256,
                header_bytes=16)
    log, got = simulate_link(link, [(0.0, [4096] * 4, [1.0])], lambda e: np.random.default_rng(7))
    assert len(got[(0, 0)]) == 4
    assert sum(ev.flips.size for ev in log) > 0


def test_multi_tail_has_one_narrow_tail_per_width():
    net = build_splitnet(1, 10, 16, seed=0)
    c = net.channels(3)
    tails = [narrow_tail(net, 3, w) for w in range(2, c + 1, 2)]
    o = net.forward_to(torch.zeros(2, 1, 8, 8), 3)
    for j, t in enumerate(tails):
        assert t(o[:, :2 * (j + 1)]).shape == (2, 10)
    single = count_parameters(net.tail(3))
    assert count_parameters(tails[-1]) == single
    assert sum(count_parameters(t) for t in tails) > 6 * single


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
    cfg.workload.corruption_fractions = [0.5]
    return cfg


def test_same_config_gives_identical_csvs_and_bad_settings_write_nothing(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    run(_tiny_cfg(), a)
    run(_tiny_cfg(), b)
    files = sorted(p.name for p in a.glob("*.csv"))
    assert "table2.csv" in files and "summary.csv" in files
    for name in files:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    for setting, value in [("split", 0), ("channels_per_unit", 3), ("bits_per_element", 20), ("latencies_s", [])]:
        cfg = _tiny_cfg()
        setattr(cfg.workload, setting, value)
        with pytest.raises(ConfigError, match=rf"nair\.{setting}"):
            run(cfg, tmp_path / setting)
        assert not (tmp_path / setting).exists()


def test_tiny_end_to_end_run(run_sim, tmp_path):
    out = tmp_path / "run"
    overrides = [f"workload.{k}={v}" for k, v in TINY.items()]
    proc = run_sim("+experiment=nair", *overrides, "cache_dir=null", "progress=false", "workload.split=5",
                   "workload.channels_per_unit=4", "workload.bits_per_element=8", f"hydra.run.dir={out}")
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
    for name in ("latency.csv", "ablation.csv", "importance.csv", "comparison.csv", "accuracy_vs_latency.png",
                 "accuracy_vs_corruption.png"):
        assert (out / name).exists(), name

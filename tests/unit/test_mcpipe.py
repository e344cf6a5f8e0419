"""mcPipe workload: partitioning, layer backward, version stores, the 1F1B event trace,
version counts per stage, memory accounting, and mcPipe = PipeDream under plain SGD."""

from __future__ import annotations

import math
import re

import pytest
import torch

from experiments.common.flops import FlopCache
from experiments.mcpipe import (
    SGD,
    Stage,
    StashStore,
    VectorStore,
    balance,
    build_layers,
    full_forward,
    replay,
    stage_bounds,
    theorem1,
    theorem1_stage,
)
from sim.config import Config, ConfigError
from sim.jobs import default_config, validate
from sim.mcpipe.build import prepare
from sim.mcpipe.settings import PIPELINES
from sim.mcpipe.timeline import Links, simulate


def _cfg(**mc) -> Config:
    """A tiny mcPipe job: a fully connected model with `fc_hidden` units on the digits."""
    cfg = default_config("mcpipe")
    cfg.progress = False
    cfg.cache_dir = None
    m = cfg.workload
    m.models, m.fc_hidden, m.fc_depth, m.workers, m.microbatch = ["fc"], 16, 2, [3], 2
    m.sim_time_s, m.eval_every_s = 0.01, 0.01
    m.devices = ["cortex_m7_512kb"]
    cfg.channel.bandwidth_bps, cfg.channel.latency_s = 1e9, 0.0
    cfg.channel.packet_bytes, cfg.channel.header_bytes = 1500, 40
    for k, v in mc.items():
        setattr(m, k, v)
    return cfg


def _job(cfg: Config):
    """The one model's job of `cfg`, its settings checked first as `sim.jobs.run` does."""
    validate(cfg)
    return prepare(cfg)[0]


@pytest.fixture(scope="module")
def tiny_job():
    return _job(_cfg())


# --- partitioning ---------------------------------------------------------------------------------
def test_balance_minimises_the_slowest_stage() -> None:
    assert balance([1, 1, 1, 1], [1, 1]) == [0, 2]
    assert balance([4, 1, 1, 1, 1], [1, 1]) == [0, 1]
    assert balance([1, 1, 1, 1], [3, 1]) == [0, 3]  # a 3x faster first worker takes 3 layers
    assert balance([5, 1, 1], [1, 1, 1]) == [0, 1, 2]
    assert stage_bounds([0, 1, 3], 5) == [(0, 1), (1, 3), (3, 5)]
    with pytest.raises(ValueError):
        balance([1, 1], [1, 1, 1])


def test_default_partition_balances_counted_flops(tiny_job) -> None:
    flops = tiny_job.model.layer_flops
    bounds = tiny_job.partition(2)
    worst = max(sum(flops[a:b]) for a, b in bounds)
    every = [max(sum(flops[:c]), sum(flops[c:])) for c in range(1, len(flops))]
    assert worst == min(every)


# --- the layers' explicit backward equals autograd -----------------------------------------------------
@pytest.mark.parametrize("name", ["vgg", "fc"])
def test_layer_backward_matches_autograd(name: str) -> None:
    layers = build_layers(name, (1, 8, 8), 10, widths=(4, 8), hidden=12, fc_hidden=16)
    gen = torch.Generator().manual_seed(0)
    params = [tuple(t.requires_grad_(True) for t in layer.init(gen)) for layer in layers]
    x = torch.rand(3, 1, 8, 8, generator=gen)
    y = torch.tensor([1, 2, 3])
    loss = torch.nn.functional.cross_entropy(full_forward(layers, params, x), y)
    auto = torch.autograd.grad(loss, [t for p in params for t in p])
    with torch.no_grad():
        stores = [
            StashStore(layer, tuple(t.detach() for t in p), SGD(0.1), FlopCache()) for layer, p in zip(layers, params)
        ]
        stage = Stage(0, layers, stores, FlopCache(), first=True, last=True)
        out, rec, _ = stage.forward(x)
        _, d = stage.loss_error(out, y)
        _, pairs, _ = stage.backward(rec, d)
        manual = [g for layer, (a, dz) in zip(layers, pairs) for g in layer.weight_grad(a, dz)]
    for g_auto, g_manual in zip(auto, manual):
        torch.testing.assert_close(g_manual, g_auto, rtol=1e-5, atol=1e-6)


# --- the stores --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("opt", [SGD(0.1), SGD(0.1, momentum=0.9, weight_decay=1e-3)])
def test_vector_store_rebuilds_the_stashed_versions(opt: SGD) -> None:
    layer = build_layers("fc", (1, 8, 8), 10, fc_hidden=6, fc_depth=1)[0]
    gen = torch.Generator().manual_seed(1)
    p0 = layer.init(gen)
    stash, vec = StashStore(layer, p0, opt, FlopCache()), VectorStore(layer, p0, opt, FlopCache())
    for _ in range(4):
        a, dz = torch.randn(2, 64, generator=gen), torch.randn(2, 6, generator=gen)
        stash.push(a, dz)
        vec.push(a, dz)
    assert stash.num_versions == 5 and vec.num_versions == 1 and len(vec.pairs) == 4
    for v in range(5):
        for s, t in zip(stash.get(v)[0], vec.get(v)[0]):
            torch.testing.assert_close(t, s, rtol=0, atol=1e-6)
    spent = vec.release(3)
    assert vec.base_v == 3 and len(vec.pairs) == 1 and spent > 0
    assert vec.vector_bytes == (2 * 64 + 2 * 6) * 4
    stash.release(3)
    assert sorted(stash.versions) == [3, 4]
    with pytest.raises(KeyError):
        vec.get(2)
    torch.testing.assert_close(vec.get(4)[0][0], stash.get(4)[0][0], rtol=0, atol=1e-6)
    greedy = StashStore(layer, p0, opt, FlopCache(), consistent=False)
    greedy.push(a, dz)
    greedy.push(a, dz)
    assert greedy.num_versions == 1 and greedy.get(0)[0] is greedy.get(2)[0]


def test_store_auto_keeps_pairs_only_where_they_are_smaller() -> None:
    """On the 8x8 digits with 16-sample microbatches every convolution's (activation, error)
    pair is larger than its kernel; the wide fully connected layer's is smaller (the 64->10
    classifier's is not: 16 x (64 + 10) floats against 650)."""
    cfg = _cfg(models=["vgg"], workers=[2], microbatch=16, store="auto", fc_hidden=256)
    job = _job(cfg)
    rows = job.model.layer_rows(cfg.workload.microbatch)
    assert [r["cheaper_to_store"] for r in rows] == ["weights"] * 4 + ["vectors", "weights"]
    assert rows[4]["pair_bytes"] == 16 * (128 + 64) * 4 and rows[4]["weight_bytes"] == (128 * 64 + 64) * 4
    stage = job.whole("mcpipe", job.params())
    assert [s.kind for s in stage.stores] == [r["cheaper_to_store"] for r in rows]


# --- the schedule: exact event trace -----------------------------------------------------------------------
def test_exact_event_trace_of_a_two_stage_pipeline() -> None:
    """Two microcontrollers, layers 64->64 and 64->10, depth 2: stage 0 warms up with two
    forwards, then alternates one backward and one forward; each backward uses the version
    its forward used. Times: the first input's transfer, then one forward's FLOPs / rate."""
    cfg = _cfg(fc_hidden=64, fc_depth=1, workers=[2], sim_time_s=0.001, eval_every_s=0.001)
    job = _job(cfg)
    res = simulate(job, "pipedream", 2)
    ops = [(w, op, k, v) for (_, w, op, k, v) in res.trace[:14]]
    assert ops == [
        (0, "F", 0, 0),
        (0, "F", 1, 0),
        (1, "F", 0, 0),
        (1, "B", 0, 0),
        (0, "B", 0, 0),
        (1, "F", 1, 1),
        (1, "B", 1, 1),
        (0, "F", 2, 1),
        (0, "B", 1, 0),
        (1, "F", 2, 2),
        (1, "B", 2, 2),
        (0, "F", 3, 2),
        (0, "B", 2, 1),
        (1, "F", 3, 3),
    ]
    rate = job.device(0).flops_per_s
    x_s = (2 * 64 * 4 + 40) * 8 / 1e9  # one 512-byte input in one packet with 40 header bytes
    f0_s = 2 * 2 * 64 * 64 / rate  # forward FLOPs of stage 0 (a 2x64 @ 64x64 product)
    times = [t for (t, *_rest) in res.trace]  # rounded to 1 ns
    assert times[0] == pytest.approx(x_s, abs=1e-9)
    assert times[1] == pytest.approx(x_s + f0_s, abs=1e-9)
    assert times[2] == pytest.approx(x_s + f0_s + x_s, abs=1e-9)  # the 2x64 activation is 512 bytes too
    assert times == sorted(times)


# --- versions per stage and memory ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def three_stage_runs():
    cfg = _cfg(depth=3, sim_time_s=0.02, eval_every_s=0.02)
    job = _job(cfg)
    return job, {s: simulate(job, s, 3) for s in PIPELINES}


def test_version_counts_per_stage(three_stage_runs) -> None:
    """PipeDream's stage s holds m - s weight versions; mcPipe and GreedyUpdates one."""
    job, runs = three_stage_runs
    assert [r["max_weight_versions"] for r in runs["pipedream"].memory] == [3, 2, 1]
    assert [r["max_weight_versions"] for r in runs["mcpipe"].memory] == [1, 1, 1]
    assert [r["max_weight_versions"] for r in runs["greedy"].memory] == [1, 1, 1]


def test_memory_accounting_on_a_known_model(three_stage_runs) -> None:
    """fc 64->16->16->10, microbatch 2, three stages of one layer, depth 3."""
    job, runs = three_stage_runs
    params = [(64 * 16 + 16) * 4, (16 * 16 + 16) * 4, (16 * 10 + 10) * 4]
    pairs = [(2 * 64 + 2 * 16) * 4, (2 * 16 + 2 * 16) * 4, (2 * 16 + 2 * 10) * 4]
    assert job.model.pair_bytes == pairs
    pd_rows, mc_rows = runs["pipedream"].memory, runs["mcpipe"].memory
    assert [r["params_bytes"] for r in pd_rows] == params
    assert [r["peak_weights_bytes"] for r in pd_rows] == [3 * params[0], 2 * params[1], params[2]]
    assert [r["peak_vectors_bytes"] for r in pd_rows] == [0, 0, 0]
    assert [r["peak_weights_bytes"] for r in mc_rows] == params
    assert [r["peak_vectors_bytes"] for r in mc_rows] == [2 * pairs[0], pairs[1], 0]  # m - s - 1 pairs
    # a rebuilt version exists only while a pass uses it: at most one layer's weights
    assert mc_rows[0]["peak_working_bytes"] == params[0]
    assert all(r["peak_working_bytes"] <= p for r, p in zip(mc_rows, params))
    # each in-flight microbatch keeps its layer input a and pre-activation z
    per_mb = [(2 * 64 + 2 * 16) * 4, (2 * 16 + 2 * 16) * 4, (2 * 16 + 2 * 10) * 4]
    assert [r["peak_activations_bytes"] >= (3 - s) * per_mb[s] for s, r in enumerate(pd_rows)] == [True] * 3
    for r in pd_rows + mc_rows:
        assert r["peak_total_bytes"] <= r["peak_state_bytes"] + r["peak_working_bytes"] + r["peak_activations_bytes"]
        assert r["exceeds_memory"] == (r["peak_total_bytes"] > 512 * 1024)
    # theorem 1's argument on each stage's own layers: m versions, or one plus m - 1 pairs
    assert [r["theorem1_stage_bytes"] for r in pd_rows] == [3 * p for p in params]
    assert [r["theorem1_stage_bytes"] for r in mc_rows] == [p + 2 * q for p, q in zip(params, pairs)]
    assert all(r["peak_state_bytes"] <= r["theorem1_stage_bytes"] for r in pd_rows + mc_rows)


def test_theorem1_formula() -> None:
    pd_b, mc_b = theorem1(total_param_bytes=4 * 2 * 10000, n=2, m=4, b=1)  # Omega/N = 10000 elements
    assert pd_b == 4 * 40000
    assert mc_b == pytest.approx(4 * (10000 + 2 * 3 * 100))
    assert theorem1(4 * 2 * 10000, 2, 4, 8)[1] == pytest.approx(4 * (10000 + 2 * 3 * 8 * 100))


def test_theorem1_stage_is_the_papers_bound_on_one_square_matrix_and_counts_what_a_store_keeps() -> None:
    k, n, m = 100, 2, 4  # one K x K matrix per worker, no bias: Omega/N = K^2 elements, a pair 2K
    paper = theorem1(4 * n * k * k, n, m, 1)
    assert theorem1_stage("pipedream", [4 * k * k], [4 * k * k], m) == paper[0]
    assert theorem1_stage("mcpipe", [4 * k * k], [4 * 2 * k], m) == pytest.approx(paper[1])
    # two layers, one storing pairs and one stashing weights (store=auto), momentum's buffer besides
    assert theorem1_stage("mcpipe", [400, 40], [80, 40], 3, momentum=True) == 440 + 2 * (80 + 40) + 440
    assert math.isnan(theorem1_stage("greedy", [400], [80], 3))


def test_measured_state_stays_within_theorem1_on_each_stage() -> None:
    """Unequal stages (64->256 then 256->256->10): the paper's equal-split figure does not bound the
    larger stage, theorem 1's argument on the stage's own layers does."""
    cfg = _cfg(fc_hidden=256, fc_depth=2, workers=[2], depth=4, microbatch=1, sim_time_s=0.05, eval_every_s=0.05)
    job = _job(cfg)
    runs = {s: simulate(job, s, 2).memory for s in ("pipedream", "mcpipe")}
    mc = runs["mcpipe"]
    assert mc[1]["peak_state_bytes"] > mc[1]["theorem1_bytes"]  # stage 1 holds more than Omega/N
    assert all(r["peak_state_bytes"] <= r["theorem1_stage_bytes"] for rows in runs.values() for r in rows)


def test_a_worker_over_its_memory_is_reported() -> None:
    """512 KiB microcontrollers, 64->256->256->10 split after the first layer, depth 8:
    PipeDream's first stage stashes 8 versions of 66,560 bytes and overflows; mcPipe fits."""
    cfg = _cfg(fc_hidden=256, fc_depth=2, workers=[2], depth=8, sim_time_s=0.2, eval_every_s=0.2)
    job = _job(cfg)
    assert job.partition(2) == [(0, 1), (1, 3)]
    pd_mem = simulate(job, "pipedream", 2).memory
    mc_mem = simulate(job, "mcpipe", 2).memory
    assert pd_mem[0]["peak_weights_bytes"] == 8 * (64 * 256 + 256) * 4
    assert pd_mem[0]["exceeds_memory"] and pd_mem[0]["peak_total_bytes"] > 512 * 1024
    assert not mc_mem[0]["exceeds_memory"] and mc_mem[0]["peak_total_bytes"] < 512 * 1024
    assert mc_mem[0]["peak_working_bytes"] == (64 * 256 + 256) * 4  # the rebuilt version, while used
    cfg.workload.rebuild = "lowrank"
    low = simulate(_job(cfg), "mcpipe", 2).memory
    assert 0 < low[0]["peak_working_bytes"] < (64 * 256 + 256) * 4 / 10  # only low-rank temporaries


# --- equivalence ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "momentum, weight_decay, rebuild", [(0.0, 0.0, "materialize"), (0.9, 1e-3, "materialize"), (0.0, 0.0, "lowrank")]
)
def test_mcpipe_weights_equal_pipedreams_at_every_step(momentum: float, weight_decay: float, rebuild: str) -> None:
    """Replaying one simulated 1F1B schedule with PipeDream's stash and with mcPipe's
    (activation, error) pairs gives the same weights after every update (plain SGD: exact;
    momentum and weight decay: replayed in order; low-rank application: within rounding);
    GreedyUpdates' do differ."""
    cfg = _cfg(
        depth=4, sim_time_s=0.02, eval_every_s=0.02, momentum=momentum, weight_decay=weight_decay, rebuild=rebuild
    )
    job = _job(cfg)
    ops = [(w, op, k) for (_, w, op, k, _v) in simulate(job, "pipedream", 3).trace]
    assert sum(op == "B" for _, op, _ in ops) > 30
    snaps = {}
    for sched in PIPELINES:
        init = job.params()
        stages = [job.stage(sched, s, b, init, first=s == 0, last=s == 2) for s, b in enumerate(job.partition(3))]
        snaps[sched] = replay(stages, ops, job.batches())

    def gap(a, b) -> float:
        return max(
            float((x - y).abs().max())
            for (_, _, pa), (_, _, pb) in zip(a, b)
            for p, q in zip(pa, pb)
            for x, y in zip(p, q)
        )

    assert [(s, k) for s, k, _ in snaps["mcpipe"]] == [(s, k) for s, k, _ in snaps["pipedream"]]
    assert gap(snaps["pipedream"], snaps["mcpipe"]) <= 1e-6
    assert gap(snaps["pipedream"], snaps["greedy"]) > 1e-5


# --- settings ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "setting, value",
    [
        ("models", ["resnet"]),
        ("schedules", ["gpipe"]),
        ("workers", [9]),
        ("workers", []),
        ("devices", ["cray"]),
        ("partition", "random"),
        ("microbatch", 0),
        ("depth", 0),
        ("store", "disk"),
        ("rebuild", "lazy"),
        ("lr", -1.0),
        ("momentum", 1.0),
        ("sim_time_s", 0.0),
        ("eval_every_s", 1.0),
        ("target_accuracy", 2.0),
        ("accuracy_at_s", 5.0),
    ],
)
def test_bad_settings_are_rejected(setting: str, value) -> None:
    """The one-line message starts with the setting as the user writes it, and its value."""
    cfg = _cfg(**{setting: value})
    with pytest.raises(ConfigError, match="^" + re.escape(f"workload.{setting}={value!r}: ")):
        validate(cfg)


def test_layer_boundaries_setting() -> None:
    cfg = _cfg(partition="layers", boundaries=[2], workers=[2])
    assert _job(cfg).partition(2) == [(0, 2), (2, 3)]
    with pytest.raises(ConfigError, match="workload.boundaries"):
        _job(_cfg(partition="layers", boundaries=[2], workers=[3]))


def test_lowrank_needs_plain_sgd() -> None:
    with pytest.raises(ConfigError, match=r"workload\.rebuild='lowrank': lowrank needs plain SGD"):
        _job(_cfg(rebuild="lowrank", momentum=0.5))


def test_raw_link_corrupts_activations_not_labels() -> None:
    """A raw link delivers flipped bits into the float tensors; the run goes on (labels arrive
    intact, so the loss never sees a class out of range)."""
    cfg = _cfg(workers=[2], sim_time_s=0.004, eval_every_s=0.004)
    cfg.channel.mode, cfg.channel.ber = "raw", 1e-3
    job = _job(cfg)
    res = simulate(job, "pipedream", 2)
    assert res.summary["bits_flipped"] > 0 and res.summary["updates"] > 0
    links, got = Links(job, 1, ("one message",)), []
    x, y = torch.zeros(64, 64), torch.arange(64) % 10
    links.env.process(links.send("master", "w0", [x, y], got.append))
    links.env.run()
    ((x_in, y_in),) = got
    assert links.counts.bits_flipped > 0 and not torch.equal(x_in, x) and torch.equal(y_in, y)
    # bits_flipped counts the flips that reached the images: as many as the images differ in
    changed = (x_in.numpy().view("uint32") ^ x.numpy().view("uint32")).astype("uint64")
    assert links.counts.bits_flipped == sum(bin(int(v)).count("1") for v in changed.ravel())

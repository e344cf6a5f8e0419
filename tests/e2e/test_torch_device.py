"""`torch_device` moves every workload's real computation, and the simulated figures do not change.

No GPU here: each workload runs small on the CPU and on a GPU emulated on the CPU
(`tests.emulated_device`: tensors moved to `cuda` are marked, an operation that mixes them
with CPU tensors raises, as CUDA would). Each emulated run must compute its models on the GPU
(counted per module class, or spied on where mcPipe has no modules), mix nothing, and write
the CPU run's CSVs byte for byte: the emulated GPU computes the same numbers, so any difference
would be the plumbing's (a FLOP figure, a memory figure, a payload's bytes that depend on the
device). A real GPU's numbers differ in their last bits; `benchmarks/gpu.py` compares there.
On the command line: a bad value, or `cuda` without a GPU, is one line, exit 2, nothing written;
`torch_device=cpu` given is the default.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import sim.__main__
from experiments.mcpipe import model as mcpipe_model
from experiments.mcpipe.stage import Stage
from sim.jobs import run
from tests.emulated_device import EmulatedDevice

from ..conftest import CONF_DIR, TINY_OVERRIDES

TINY = {
    "federated": [*TINY_OVERRIDES, "compare=[fedmax,fedprox]"],
    "vectorize": [*TINY_OVERRIDES, "workload.vectorize=true", "strategy=fedprox"],
    "nonn": [
        "+experiment=nonn",
        *("workload.teacher_depth=10", "workload.teacher_width=0.5", "workload.teacher_epochs=1"),
        *("workload.student_depth=10", "workload.student_epochs=1", "workload.num_students=3"),
        *("workload.timing_images=2", "workload.memory_budget_bytes=20000", "workload.flop_budget=1e6"),
        *("workload.top_filters=8", "workload.edge_percentile=80", "workload.calibrate=false"),
        *("workload.beta_search=[100]", "workload.at_beta_search=[]", "channel.mode=raw", "channel.ber=1e-4"),
    ],
    "nair": [
        "+experiment=nair",
        *("workload.epochs=1", "workload.retune_epochs=1", "workload.train_samples=60"),
        *("workload.test_samples=20", "workload.latencies_s=[0.03,0.16]", "workload.corruption_rates=[0.5]"),
        *("channel.bandwidth_bps=250e3", "channel.mode=raw", "channel.ber=1e-4"),
    ],
    "mcpipe": [
        "+experiment=mcpipe",
        *("workload.models=[fc]", "workload.fc_hidden=16", "workload.workers=[2]", "workload.microbatch=4"),
        *("workload.sim_time_s=0.04", "workload.eval_every_s=0.01", "workload.accuracy_at_s=0.02"),
        *("channel.mode=raw", "channel.ber=1e-5"),
    ],
    "dream": [
        "+experiment=dream",
        *("workload.teacher_width=1.0", "workload.teacher_epochs=1", "workload.images=40", "workload.steps=3"),
        *("workload.student_epochs=1", "workload.student_widths=[0.25]"),
    ],
    "offload": ["+experiment=offload", "workload.images=12", "workload.epochs=2", "channel.ber=1e-3"],
}

# per workload: the model classes whose calls must run on the GPU, and the calls each may still
# make on the CPU: measurements on fresh models built only to count what they cost
ON_GPU = {
    "federated": {"MLP": 0},  # the fit check (a batch through a fresh model) and its FLOP count
    "vectorize": {"MLP": 0},
    "nonn": {"WRN": 0, "NoNN": 0},
    "nair": {"SplitNet": 0, "Tail": 0},
    "dream": {"WRN": 2},  # a fresh student's distillation cost, counted before it trains
    "offload": {"MLP": 0},
}
ON_CPU_FEDERATED = {"federated": 2, "vectorize": 4}  # + each client step's charged FLOP measurement (vectorize)


def _cfg(name: str, device: str | None, cache: Path):
    """The tiny job `name` as the command line composes it (`torch_device=DEVICE`, unless None)."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        overrides = [*TINY[name], "progress=false", "plots=false", *([f"torch_device={device}"] if device else [])]
        cfg = OmegaConf.to_object(compose(config_name="config", overrides=overrides))
        cfg.compared = sim.__main__.compared_params(cfg)  # as the entry point does
    cfg.cache_dir = str(cache)
    return cfg


def _csvs(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.csv"))}


class _Spy:
    """mcPipe's computations (no modules): the device of every stage pass and evaluation."""

    def __init__(self, monkeypatch):
        self.devices: dict[str, list[str]] = {"forward": [], "backward": [], "evaluate": []}
        forward, backward, evaluate = Stage.forward, Stage.backward, mcpipe_model.evaluate

        def spy_forward(stage, x):
            self.devices["forward"].append(x.device.type)
            return forward(stage, x)

        def spy_backward(stage, rec, d):
            self.devices["backward"].append(d.device.type)
            return backward(stage, rec, d)

        def spy_evaluate(layers, params, x, y):
            self.devices["evaluate"].append(params[0][0].device.type + "/" + x.device.type)
            return evaluate(layers, params, x, y)

        import sim.mcpipe.links as links

        monkeypatch.setattr(Stage, "forward", spy_forward)
        monkeypatch.setattr(Stage, "backward", spy_backward)
        monkeypatch.setattr(links, "evaluate", spy_evaluate)


@pytest.mark.parametrize("name", list(TINY))
def test_every_computation_runs_on_the_gpu_and_the_csvs_do_not_change(name: str, tmp_path, monkeypatch) -> None:
    cache = tmp_path / "cache"
    run(_cfg(name, "cpu", cache), tmp_path / "cpu")
    cached = set(cache.glob("*")) if cache.exists() else set()
    spy = _Spy(monkeypatch) if name == "mcpipe" else None
    with EmulatedDevice() as gpu:
        run(_cfg(name, "cuda", cache), tmp_path / "gpu")
    if cached:  # the GPU's trained models are its own (on a real GPU their last bits differ), none reused
        assert len(set(cache.glob("*")) - cached) == len(cached)
    cpu_csvs, gpu_csvs = _csvs(tmp_path / "cpu"), _csvs(tmp_path / "gpu")
    assert list(gpu_csvs) == list(cpu_csvs) and len(cpu_csvs) >= 3
    assert [f for f in cpu_csvs if cpu_csvs[f] != gpu_csvs[f]] == []
    if spy is not None:
        d = spy.devices
        for kind in ("forward", "backward"):  # the per-layer costs measured once, when the model is built
            assert d[kind].count("cpu") == 1 and d[kind].count("cuda") > 10, kind
        assert set(d["evaluate"]) == {"cuda/cuda"}
        return
    on_gpu = {cls.__name__: n for cls, n in gpu.ran_on_device.items()}
    on_cpu = {cls.__name__: n for cls, n in gpu.ran_on_cpu.items()}
    for cls, allowed in ON_GPU[name].items():
        assert on_gpu.get(cls, 0) > 0, (cls, on_gpu)
        assert on_cpu.get(cls, 0) <= ON_CPU_FEDERATED.get(name, allowed), (cls, on_cpu)


def test_cuda_without_a_gpu_is_one_line_and_writes_nothing(run_sim, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # no GPU, even on a machine that has one
    res = run_sim("torch_device=cuda", "progress=false", f"hydra.run.dir={tmp_path / 'out'}")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "error: torch_device=cuda: no CUDA device is available here (torch.cuda.is_available() is False)"
    ]
    assert list(tmp_path.iterdir()) == []
    res = run_sim("torch_device=tpu", "progress=false", f"hydra.run.dir={tmp_path / 'out'}")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "error: torch_device='tpu': allowed: cpu, cuda, cuda:N (the GPU of index N), mps"
    ]
    assert list(tmp_path.iterdir()) == []


def test_torch_device_cpu_given_is_the_default(tmp_path) -> None:
    given, default = _cfg("federated", "cpu", tmp_path / "cache"), _cfg("federated", None, tmp_path / "cache")
    assert given == default
    run(given, tmp_path / "given")
    run(default, tmp_path / "default")
    assert _csvs(tmp_path / "given") == _csvs(tmp_path / "default") != {}


def test_models_from_the_cache_compute_on_the_gpu_too(tmp_path) -> None:
    cache = tmp_path / "cache"
    with EmulatedDevice():
        run(_cfg("offload", "cuda", cache), tmp_path / "trained")
    cached = set(cache.glob("*"))
    with EmulatedDevice() as gpu:
        run(_cfg("offload", "cuda", cache), tmp_path / "loaded")
    assert set(cache.glob("*")) == cached != set()  # every model came from the cache
    on_gpu = {cls.__name__: n for cls, n in gpu.ran_on_device.items()}
    on_cpu = {cls.__name__: n for cls, n in gpu.ran_on_cpu.items()}
    assert on_gpu.get("MLP", 0) > 0 and on_cpu.get("MLP", 0) == 0, (on_gpu, on_cpu)
    assert _csvs(tmp_path / "trained") == _csvs(tmp_path / "loaded")

"""`torch_device`: its validation (one line naming the setting), what it changes in the model
cache's keys (and what it must not change: the FLOP cache's), the helpers every workload moves
its tensors with, `train_cached` carrying it to the trainings, and the instrument the workload
tests rely on (`tests.emulated_device`) catching what CUDA would refuse."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from experiments.common.cache import Training, cache_key, train_cached
from experiments.common.torchdev import cpu_state_dict, device_of, to_torch_device, use_torch_device
from experiments.nonn.train import TeacherTargets
from sim.backends import LocalBackend
from sim.config import ConfigError
from sim.jobs import default_config, run, validate
from sim.meter import WorkMeter
from tests.emulated_device import DeviceMixError, EmulatedDevice

NO_CUDA = "torch_device=cuda: no CUDA device is available here (torch.cuda.is_available() is False)"


def _refused(cfg) -> str:
    with pytest.raises(ConfigError) as info:
        validate(cfg)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("value", ["gpu", "CUDA", "cuda:x", "cuda:-1", "cpu:0", "mps:1", ""])
def test_a_device_torch_does_not_name_is_refused(value: str) -> None:
    cfg = default_config()
    cfg.torch_device = value
    assert _refused(cfg) == f"torch_device={value!r}: allowed: cpu, cuda, cuda:N (the GPU of index N), mps"


def test_cuda_without_a_gpu_is_refused(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # whatever this machine has
    cfg = default_config()
    cfg.torch_device = "cuda"
    assert _refused(cfg) == NO_CUDA
    cfg.torch_device = "cuda:1"
    assert _refused(cfg) == NO_CUDA.replace("cuda:", "cuda:1:", 1)


def test_nothing_is_written_when_cuda_is_refused(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = default_config()
    cfg.torch_device = "cuda"
    with pytest.raises(ConfigError, match="no CUDA device"):
        run(cfg, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_a_gpu_index_the_machine_lacks_is_refused() -> None:
    cfg = default_config()
    cfg.torch_device = "cuda:3"
    with EmulatedDevice():  # one GPU
        assert _refused(cfg) == "torch_device=cuda:3: this machine has 1 CUDA device(s), cuda:0 .. cuda:0"
        cfg.torch_device = "cuda:0"
        validate(cfg)


@pytest.mark.parametrize("workload", ["federated", "nonn", "mcpipe"])
def test_forked_workers_cannot_use_the_gpu(workload: str) -> None:
    cfg = default_config(workload)
    cfg.backend, cfg.torch_device = "processes", "cuda"
    with EmulatedDevice():
        message = _refused(cfg)
    assert message.startswith("torch_device=cuda: backend=processes forks its workers") and "backend=ray" in message
    cfg.backend = "ray"  # each computation carries the device to the worker that runs it
    with EmulatedDevice():
        validate(cfg)


def test_a_users_flower_app_picks_its_own_device() -> None:
    cfg = default_config()
    cfg.workload.app.server = "tests.quickstart_app.server_app:app"
    cfg.workload.app.client = "tests.quickstart_app.client_app:app"
    cfg.torch_device = "cuda"
    with EmulatedDevice():
        message = _refused(cfg)
    assert message.startswith("torch_device='cuda': moves the built-in ClientApp and server") and "cpu" in message


def test_the_model_cache_keys_on_the_gpu_but_not_on_the_cpu() -> None:
    parts = {"a": 1}
    assert cache_key(parts, 1) == cache_key(parts, 1, "cpu")  # caches made before the setting stay valid
    with EmulatedDevice():
        on_gpu = cache_key(parts, 1, "cuda")
        assert on_gpu == cache_key(parts, 1, "cuda:0") != cache_key(parts, 1)


def test_to_torch_device_moves_every_tensor_and_keeps_the_rest() -> None:
    with EmulatedDevice():
        gpu = use_torch_device("cuda")
        targets = TeacherTargets(torch.zeros(2, 3), torch.zeros(2, 4, 1, 1), [torch.zeros(2, 1)])
        moved = to_torch_device((targets, {"lr": 0.1, "x": torch.ones(3)}, [torch.ones(1)], "text"), gpu)
        t, d, lst, text = moved
        assert [x.device.type for x in (t.logits, t.fconv, *t.attention, d["x"], lst[0])] == ["cuda"] * 5
        assert d["lr"] == 0.1 and text == "text"
        assert targets.logits.device.type == "cpu"  # the original is left where it was
        assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32  # full float32
    plain = (1, "a", {"b": 2.0})
    assert to_torch_device(plain, torch.device("cpu")) is plain  # nothing to move: nothing copied


def test_device_of_and_cpu_state_dict() -> None:
    with EmulatedDevice():
        model = nn.Linear(2, 2).to("cuda")
        assert device_of(model).type == "cuda" and device_of(nn.ReLU()).type == "cpu"
        state = cpu_state_dict(model)
        assert [v.device.type for v in state.values()] == ["cpu", "cpu"]
        assert hasattr(state, "_metadata")  # still a state dict load_state_dict reads as one


def _train_on(model: nn.Linear, x: torch.Tensor, seen: list) -> dict:
    """A training (module-level): where its model and data were, one SGD step."""
    seen.append((device_of(model).type, x.device.type))
    loss = model(x).sum()
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            p -= 0.1 * p.grad
    return {"loss": loss.item()}


class _Executor(LocalBackend):
    """The local back end with a torch device, as `sim.backends.Executor` has."""

    def __init__(self, torch_device: str):
        super().__init__(torch_threads=1)
        self.torch_device = torch_device


def test_train_cached_trains_on_the_executors_device_and_leaves_the_model_there(tmp_path) -> None:
    seen: list = []
    with EmulatedDevice():
        torch.manual_seed(0)
        model, x = nn.Linear(3, 2), torch.randn(4, 3)
        [(meta, hit)] = train_cached(_Executor("cuda"), tmp_path, [Training("m", {}, model, _train_on, (x, seen))])
        assert not hit and seen == [("cuda", "cuda")]
        assert device_of(model).type == "cuda" and x.device.type == "cpu"
        gpu_weights = model.weight.cpu().clone()
        again = nn.Linear(3, 2)
        [(_, hit)] = train_cached(_Executor("cuda"), tmp_path, [Training("m", {}, again, _train_on, (x, seen))])
        assert hit and device_of(again).type == "cuda" and torch.equal(again.weight.cpu(), gpu_weights)
    cpu_model = nn.Linear(3, 2)
    [(_, hit)] = train_cached(_Executor("cpu"), tmp_path, [Training("m", {}, cpu_model, _train_on, (x, seen))])
    assert not hit and seen[-1] == ("cpu", "cpu")  # the GPU's weights are not the CPU's


def test_the_flop_cache_is_shared_by_every_device() -> None:
    cache: dict = {}
    torch.manual_seed(0)
    model, x = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)), torch.randn(5, 8)
    with WorkMeter(cache) as on_cpu:
        model(x).sum().backward()
    with EmulatedDevice():
        gpu = use_torch_device("cuda")
        model.to(gpu)
        with WorkMeter(cache) as on_gpu:
            model(x.to(gpu)).sum().backward()
        fresh: dict = {}
        with WorkMeter(fresh) as counted_on_gpu:
            model(x.to(gpu)).sum().backward()
    assert len(cache) == 1  # the GPU's call found the CPU's entry
    assert on_gpu.flops == on_cpu.flops == counted_on_gpu.flops > 0
    assert on_gpu.peak_bytes == on_cpu.peak_bytes == counted_on_gpu.peak_bytes > 0  # tensor sizes, not an allocator


def test_the_emulated_gpu_refuses_what_cuda_refuses() -> None:
    with EmulatedDevice():
        gpu = use_torch_device("cuda")
        model, x = nn.Linear(3, 2).to(gpu), torch.randn(4, 3)
        with pytest.raises(DeviceMixError, match="mixes the device with the CPU"):
            model(x)
        with pytest.raises(DeviceMixError, match="numpy"):
            model.weight.detach().numpy()
        with pytest.raises(DeviceMixError, match="mixes"):
            x.to(gpu) * torch.ones(4, 3)
        y = model(x.to(gpu))
        assert y.device.type == "cuda" and (y * torch.tensor(2.0)).device.type == "cuda"  # a CPU scalar may mix
        assert x.to(gpu)[torch.tensor([0, 2])].device.type == "cuda"  # CPU indices into a GPU tensor too
        with pytest.raises(DeviceMixError, match="GPU indices into a CPU tensor"):
            x[torch.tensor([0, 2]).to(gpu)]
        y.sum().backward()
        assert model.weight.grad.device.type == "cuda" and y.cpu().device.type == "cpu"
        assert y.detach().cpu().numpy().shape == (4, 2)
    assert not torch.are_deterministic_algorithms_enabled()  # what `cuda` switched on is put back
    assert torch.backends.cudnn.allow_tf32

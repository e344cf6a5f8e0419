"""Where the real computations run: the torch device of a job (`torch_device`: cpu, cuda,
cuda:N, mps), for every workload. Not a simulated device: what the simulation charges (FLOPs
counted by `FlopCounterMode`, bytes from tensor sizes) is the same on any of them.

The conventions every workload's computation follows:

- weights are initialised on the CPU (seeded CPU generators) and then moved, so a seed gives
  the same initial weights on any device; batch orders and other draws stay on the CPU too;
- a function handed a model computes where the model is (`device_of`), moving its inputs there;
- values come back to the CPU with `.cpu()` (a no-op on the CPU), before numpy or a payload.

`use_torch_device(name)` is what a computation calls first: the `torch.device`, with CUDA made
deterministic in this process (cuDNN's deterministic kernels, no autotuning, torch's
deterministic algorithms, cuBLAS's fixed workspace), so that a rerun gives the same results,
and in full float32 (no TF32 in convolutions and matrix products: the computation the CPU does,
to its rounding; NoNN's split baseline checks its slices against the whole to 1e-4).
"""

from __future__ import annotations

import dataclasses
import os

import torch
from torch import nn

__all__ = ["cpu_state_dict", "device_of", "to_torch_device", "use_torch_device"]


def use_torch_device(name: str | torch.device) -> torch.device:
    """`torch.device(name)`; for CUDA, deterministic kernels in this process from now on."""
    device = torch.device(name)
    if device.type == "cuda":
        # read when cuBLAS makes its first handle; without it deterministic matrix products refuse
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.use_deterministic_algorithms(True, warn_only=True)
    return device


def device_of(module: nn.Module) -> torch.device:
    """The device of `module`'s first parameter (or buffer); the CPU for one with neither."""
    for t in module.parameters():
        return t.device
    for t in module.buffers():
        return t.device
    return torch.device("cpu")


def cpu_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """`module.state_dict()` with every value on the CPU (the same tensors when it is there)."""
    state = module.state_dict()
    for k, v in state.items():
        state[k] = v.cpu()
    return state


def to_torch_device(obj, device: torch.device):
    """`obj` with every tensor in it on `device`: a tensor, a module (moved in place), or lists,
    tuples, dicts and dataclasses of them (copied only where something moved)."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, nn.Module):
        return obj.to(device)
    if isinstance(obj, (list, tuple)):
        moved = [to_torch_device(v, device) for v in obj]
        if all(a is b for a, b in zip(moved, obj)):
            return obj
        return type(obj)(moved) if not hasattr(obj, "_fields") else type(obj)(*moved)
    if isinstance(obj, dict):
        moved = {k: to_torch_device(v, device) for k, v in obj.items()}
        return obj if all(moved[k] is v for k, v in obj.items()) else type(obj)(moved)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        fields = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.init}
        moved = {k: to_torch_device(v, device) for k, v in fields.items()}
        return obj if all(moved[k] is v for k, v in fields.items()) else dataclasses.replace(obj, **moved)
    return obj

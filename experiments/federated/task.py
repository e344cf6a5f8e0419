"""The built-in federated workload: a Flower ClientApp that trains the experiment's model on
its device's partition with the objective its strategy asks for, and the server-side
evaluation of the global model.

The ClientApp is an ordinary Flower ClientApp; the simulator runs it exactly as it runs a
user's, and its reply holds only what Flower's would (weights and metrics). The activation
divergence is the simulator's own measurement (`probe_activations`): the server side of the
simulation runs each client's trained weights in eval mode on a fixed set of held-out images,
off the simulated clock.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from torch import nn

from experiments.common.data import Dataset
from experiments.common.torchdev import device_of, use_torch_device
from experiments.federated.records import ModelRecords
from strategies.objectives import ClientObjective

__all__ = [
    "PROBE_IMAGES",
    "FederatedTask",
    "evaluate_model",
    "learning_rate",
    "make_client_app",
    "probe_activations",
    "probe_model",
    "train_reply",
]

# The activation divergence's probe set: the first PROBE_IMAGES images of the test split (held
# out from every client's data), the same for every client and round.
PROBE_IMAGES = 64


@dataclass
class FederatedTask:
    """What every client of the built-in workload shares: data, partitions, model, optimiser."""

    data: Dataset
    partitions: Sequence[np.ndarray]  # device i's training indices (a list, or lazy SampledPartitions)
    build_model: Callable[[], nn.Module]
    local_epochs: int = 1
    batch_size: int = 16
    lr: float = 0.05
    momentum: float = 0.5
    weight_decay: float = 5e-4
    lr_decay: float = 1.0
    torch_device: str = "cpu"  # where the clients train and the server evaluates (`torch_device`)

    def model_on_device(self) -> nn.Module:
        """A fresh model, initialised on the CPU from its seed, then moved to `torch_device`."""
        return self.build_model().to(use_torch_device(self.torch_device))


def _train(task: FederatedTask, model: nn.Module, idx: np.ndarray, objective: ClientObjective, lr: float) -> float:
    if len(idx) == 0:  # nothing to learn from: the reply is an error, not weights of 0 examples
        raise ValueError("this device's partition holds no training samples")
    device = device_of(model)
    x, y = task.data.x_train[idx].to(device), task.data.y_train[idx].to(device)
    opt = torch.optim.SGD(
        model.parameters(), lr=lr, momentum=task.momentum, nesterov=task.momentum > 0, weight_decay=task.weight_decay
    )
    anchor = [p.detach().clone() for p in model.parameters()] if objective.mu > 0 else []
    model.train()
    total, count = 0.0, 0
    for epoch in range(task.local_epochs):
        last = epoch == task.local_epochs - 1
        order = torch.randperm(len(idx))  # on the CPU, from the job's seed, whatever the device
        for start in range(0, len(idx), task.batch_size):
            b = order[start : start + task.batch_size]
            logits, feats = model(x[b], with_features=True)
            loss = objective.loss(logits, y[b], feats, list(model.parameters()), anchor)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if last:
                total += loss.item() * len(b)
                count += len(b)
    return total / max(count, 1)


def make_client_app(task: FederatedTask) -> ClientApp:
    app = ClientApp()
    held: list[ModelRecords] = []  # the app's one model (one per process that runs it), built at its first message

    def global_model(msg: Message) -> ModelRecords:
        """The app's model with the message's weights. Loading (strictly) replaces every
        parameter and buffer, so a fresh, randomly initialised model per message would be
        wasted work (~6% of a small client's time); a new optimiser per message keeps no
        state from the last one."""
        if not held:
            held.append(ModelRecords(task.model_on_device()))
        held[0].load(msg.content["arrays"])
        return held[0]

    @app.train()
    def train(msg: Message, ctx: Context) -> Message:
        idx = task.partitions[int(ctx.node_config["partition-id"])]
        config = msg.content["config"]
        weights = global_model(msg)
        lr = learning_rate(task, config)
        loss = _train(task, weights.model, idx, ClientObjective.from_config(config), lr)
        return train_reply(msg, weights.record(), loss, len(idx))

    @app.evaluate()
    def evaluate(msg: Message, ctx: Context) -> Message:
        idx = task.partitions[int(ctx.node_config["partition-id"])]
        model = global_model(msg).model
        loss, acc = evaluate_model(model, task.data.x_train[idx], task.data.y_train[idx])
        metrics = MetricRecord({"loss": loss, "accuracy": acc, "num-examples": len(idx)})
        return Message(content=RecordDict({"metrics": metrics}), reply_to=msg)

    app.python_memory = False  # its memory is all torch's, which the work meter measures (no Python tracing)
    return app


def learning_rate(task: FederatedTask, config) -> float:
    """The round's learning rate: `lr` decayed once per round since the first."""
    return task.lr * task.lr_decay ** (int(config.get("server-round", 1)) - 1)


def train_reply(msg: Message, arrays: ArrayRecord, loss: float, num_examples: int) -> Message:
    """The built-in ClientApp's reply to a train message."""
    content = RecordDict(
        {"arrays": arrays, "metrics": MetricRecord({"train_loss": loss, "num-examples": num_examples})}
    )
    return Message(content=content, reply_to=msg)


class _ChannelsLastMaxPool2d(nn.MaxPool2d):
    """`nn.MaxPool2d` that pools a contiguous 4-D CPU input in a channels-last copy and returns
    its output contiguous, as `nn.MaxPool2d` would: the same values (a maximum is exact in any
    layout, NaN propagated alike), several times faster for small maps (torch's channels-first
    CPU kernel walks each small plane on its own: 0.41 ms against 0.09 ms for the probe's
    64 x 16 x 8 x 8). Any other input takes `nn.MaxPool2d` itself."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.return_indices or x.dim() != 4 or x.device.type != "cpu" or not x.is_contiguous():
            return super().forward(x)
        return super().forward(x.contiguous(memory_format=torch.channels_last)).contiguous()


def probe_model(model: nn.Module) -> nn.Module:
    """`model` made the activation probe's own (a model that is never trained): each
    `nn.MaxPool2d` becomes a `_ChannelsLastMaxPool2d` with its settings, which gives the same
    activations faster (a quarter less probe time: docs/scale.md, section 4). Parameters,
    buffers and the state dict are unchanged."""
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if type(child) is nn.MaxPool2d:
                setattr(
                    module,
                    name,
                    _ChannelsLastMaxPool2d(
                        child.kernel_size,
                        child.stride,
                        child.padding,
                        child.dilation,
                        child.return_indices,
                        child.ceil_mode,
                    ),
                )
    return model


@torch.no_grad()
def probe_activations(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    """(images, D) float32: the model's last hidden activation for each probe image, in eval
    mode (batch norm's running statistics, no dropout); the model's mode is restored after.
    Computed where the model is."""
    x = x.to(device_of(model))
    was_training = model.training
    model.eval()
    try:
        _, feats = model(x, with_features=True)
    finally:
        model.train(was_training)
    return feats.detach().to(torch.float32).cpu().numpy()


@torch.no_grad()
def evaluate_model(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> tuple[float, float]:
    """(mean cross-entropy, accuracy); a model whose weights went NaN scores NaN loss. Computed
    where the model is (`x` and `y` moved there, once)."""
    model.eval()
    device = device_of(model)
    x, y = x.to(device), y.to(device)
    loss, correct = 0.0, 0
    for start in range(0, len(x), batch_size):
        logits = model(x[start : start + batch_size])
        loss += float(F.cross_entropy(logits, y[start : start + batch_size], reduction="sum"))
        correct += int((logits.argmax(1) == y[start : start + batch_size]).sum())
    return loss / len(x), correct / len(x)

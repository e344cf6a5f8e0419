"""The small digits workload of the Flower comparison, as an ordinary Flower app pair.

MLP 64-64-10 on scikit-learn's digits (pixels / 16, read by
`experiments.common.data.digits_arrays`); the client with partition id p holds the
samples p, p+10, p+20, ... (so for more than 10 clients, partitions repeat); local training is
5 full-batch SGD steps at lr 0.1; FedAvg samples half the nodes per round (at least 2), no
client evaluation; the server evaluates the global model on all 1797 samples after each round.
This is the workload of Flower's own simulation measured on this kind of machine (issue 6).

The same `server_app` and `client_app` run under `flwr.simulation.run_simulation` and under
edgesim (`workload.app.server=benchmarks.digits_fl:server_app`, `workload.app.client=...`),
so both do the same work. Settings come from the run config (`num-server-rounds`, `seed`,
`result-json`), falling back to `SETTINGS` (which a caller of run_simulation, which has no run
config, fills in). The server app writes the accuracy per round to `result-json`.
"""

from __future__ import annotations

import json
import random
import time

import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg
from torch import nn

from experiments.common.data import digits_arrays

LOCAL_STEPS = 5
LR = 0.1
STRIDE = 10
FRACTION_TRAIN = 0.5

_X, _y = digits_arrays()  # scikit-learn's digits, read without importing scikit-learn
X = torch.tensor(_X / 16.0, dtype=torch.float32)
Y = torch.tensor(_y)

SETTINGS: dict = {"num-server-rounds": 10, "seed": 0, "result-json": ""}


def net() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


def local_train(model: nn.Module, pid: int) -> tuple[float, int]:
    idx = torch.arange(pid, len(X), STRIDE)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    for _ in range(LOCAL_STEPS):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(X[idx]), Y[idx])
        loss.backward()
        opt.step()
    return float(loss.item()), len(idx)


def accuracy(model: nn.Module) -> float:
    with torch.no_grad():
        return float((model(X).argmax(1) == Y).float().mean())


client_app = ClientApp()


@client_app.train()
def train(msg: Message, ctx: Context) -> Message:
    model = net()
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    loss, n = local_train(model, int(ctx.node_config["partition-id"]))
    content = RecordDict(
        {"arrays": ArrayRecord(model.state_dict()), "metrics": MetricRecord({"train_loss": loss, "num-examples": n})}
    )
    return Message(content=content, reply_to=msg)


server_app = ServerApp()


@server_app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = {**SETTINGS, **dict(context.run_config)}
    random.seed(int(cfg["seed"]))  # FedAvg samples nodes with `random`
    torch.manual_seed(int(cfg["seed"]))  # initial weights
    history: dict[int, float] = {}

    def evaluate(rnd: int, arrays: ArrayRecord) -> MetricRecord:
        model = net()
        model.load_state_dict(arrays.to_torch_state_dict())
        history[rnd] = accuracy(model)
        return MetricRecord({"accuracy": history[rnd]})

    strategy = FedAvg(fraction_train=FRACTION_TRAIN, fraction_evaluate=0.0, min_available_nodes=2)
    t0 = time.perf_counter()
    strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord(net().state_dict()),
        num_rounds=int(cfg["num-server-rounds"]),
        evaluate_fn=evaluate,
    )
    if cfg["result-json"]:
        with open(cfg["result-json"], "w") as f:
            # fl_s: the rounds alone (wall time of strategy.start), under either runtime
            json.dump({"accuracy": history, "fl_s": time.perf_counter() - t0}, f)

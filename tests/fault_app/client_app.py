"""ClientApps that fail in the ways a server must survive (used by tests/e2e/test_client_faults.py).
Each echoes the model it is sent, as an identity training step would, except where it misbehaves."""

import numpy as np
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp


def _reply(msg: Message, arrays: ArrayRecord) -> Message:
    content = RecordDict({"arrays": arrays, "metrics": MetricRecord({"num-examples": 10})})
    return Message(content, reply_to=msg)


def _evaluate(msg: Message, context: Context) -> Message:
    metrics = MetricRecord({"eval_acc": 0.5, "eval_loss": 1.0, "num-examples": 10})
    return Message(RecordDict({"metrics": metrics}), reply_to=msg)


nan_app = ClientApp()  # node 2 sends NaN weights


@nan_app.train()
def nan_train(msg: Message, context: Context) -> Message:
    arrays = msg.content["arrays"].to_numpy_ndarrays()
    if context.node_id == 2:
        arrays = [np.full_like(a, np.nan) for a in arrays]
    return _reply(msg, ArrayRecord(arrays))


nan_app.evaluate()(_evaluate)

raising_app = ClientApp()  # every odd node raises


@raising_app.train()
def raising_train(msg: Message, context: Context) -> Message:
    if context.node_id % 2:
        raise ValueError(f"node {context.node_id} cannot train: its sensor is unplugged")
    return _reply(msg, msg.content["arrays"])


raising_app.evaluate()(_evaluate)

numpy_app = ClientApp()  # 64 MiB of numpy a training step, which no torch meter sees


@numpy_app.train()
def numpy_train(msg: Message, context: Context) -> Message:
    scratch = np.ones(8 * 2**20, dtype=np.float64)  # 64 MiB
    scratch.sum()
    return _reply(msg, msg.content["arrays"])


numpy_app.evaluate()(_evaluate)

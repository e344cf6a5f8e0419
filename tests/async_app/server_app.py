"""An asynchronous ServerApp written against Flower's Grid API only (push_messages,
pull_messages), as a user would for a SuperLink: it keeps `concurrency` nodes training, mixes
each update into the model as it arrives (FedAsync with a constant weight), and sends the new
model to the node that freed up. It knows nothing of the simulator; the quickstart ClientApp
trains."""

import random
import time

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.serverapp import Grid, ServerApp

from tests.quickstart_app.task import Net

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    versions: int = context.run_config["num-server-rounds"]
    concurrency: int = context.run_config["concurrency"]
    mixing: float = context.run_config["mixing"]
    lr: float = context.run_config["lr"]

    weights = Net().state_dict()
    version = 0
    out: dict[str, int] = {}  # message id -> node
    while version < versions:
        idle = [n for n in grid.get_node_ids() if n not in out.values()]
        for node in random.sample(idle, min(concurrency - len(out), len(idle))):
            content = RecordDict(
                {
                    "arrays": ArrayRecord(weights),
                    "config": ConfigRecord({"lr": lr, "server-round": version + 1}),
                }
            )
            msg = Message(content=content, message_type=MessageType.TRAIN, dst_node_id=node)
            (mid,) = grid.push_messages([msg])
            out[mid] = node
        replies = list(grid.pull_messages(list(out)))
        for reply in replies:
            del out[reply.metadata.reply_to_message_id]
            if reply.has_error():
                continue
            update = reply.content["arrays"].to_torch_state_dict()
            weights = {k: (1 - mixing) * w + mixing * update[k] for k, w in weights.items()}
            version += 1
        if not replies:
            time.sleep(0.01)  # nothing yet: ask again shortly

"""mcPipe workload (issue 5): model-parallel pipeline training with weight versions.

Pure computation, no clock: the models as lists of layers (`model`), their split into stages
(`partition`), the weight-version stores of PipeDream, mcPipe and GreedyUpdates (`versions`),
one pipeline stage's forward and backward on explicit weight versions (`stage`), a schedule
replayed without a clock (`replay`), what every schedule's training shares (`training`) and
the memory a worker holds (`memory`). FLOPs are counted by `experiments.common.flops`.
`sim/mcpipe/` drives them on simulated devices and links.
"""

from .memory import Memory, theorem1, theorem1_stage
from .model import MODELS, Layer, build_layers, evaluate, full_forward
from .partition import PARTITIONS, balance, stage_bounds
from .replay import replay
from .stage import Stage
from .training import Batches, Model, build_model
from .versions import SGD, STORES, StashStore, VectorStore, make_store, nbytes

__all__ = [
    "Batches",
    "Layer",
    "MODELS",
    "Memory",
    "Model",
    "PARTITIONS",
    "SGD",
    "STORES",
    "Stage",
    "StashStore",
    "VectorStore",
    "balance",
    "build_layers",
    "build_model",
    "evaluate",
    "full_forward",
    "make_store",
    "nbytes",
    "replay",
    "stage_bounds",
    "theorem1",
    "theorem1_stage",
]

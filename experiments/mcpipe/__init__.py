"""mcPipe workload (issue 5): model-parallel pipeline training with weight versions.

Pure computation, no clock: the models as lists of layers (`model`), their split into stages
(`partition`), the weight-version stores of PipeDream, mcPipe and GreedyUpdates (`versions`),
one pipeline stage's forward and backward on explicit weight versions (`stage`) and the FLOP
counter (`flops`). `sim/mcpipe.py` drives them on simulated devices and links.
"""
from .flops import FlopCache
from .model import MODELS, Layer, build_layers, evaluate, full_forward
from .partition import PARTITIONS, balance, stage_bounds
from .replay import replay
from .stage import Stage
from .versions import SGD, StashStore, VectorStore, make_store

__all__ = ["FlopCache", "Layer", "MODELS", "PARTITIONS", "SGD", "Stage", "StashStore", "VectorStore", "balance",
           "build_layers", "evaluate", "full_forward", "make_store", "replay", "stage_bounds"]

"""NAIR (Xiao et al.): head/tail split inference with importance-ordered intermediate
representations, and its CLIO baselines. Models, training and the slicing algorithm; no clock
(the simulation of the link lives in `sim/nair.py`)."""
from .model import SplitNet, build_splitnet, count_parameters, narrow_tail
from .slicing import SlicePlan, assemble, decode_slice, encode_slices, importance_order, unit_importance
from .training import TrainSettings, accuracy, retune_nair, train_clio, train_original

__all__ = ["SlicePlan", "SplitNet", "TrainSettings", "accuracy", "assemble", "build_splitnet", "count_parameters",
           "decode_slice", "encode_slices", "importance_order", "narrow_tail", "retune_nair", "train_clio",
           "train_original", "unit_importance"]

"""NAIR (Xiao et al.): head/tail split inference with importance-ordered intermediate
representations, and its CLIO and raw-input baselines. The real computation; no clock.

`model` (the MobileNetV2-style SplitNet, its heads and tails, CLIO's narrow tails), `slicing`
(eq. 8's unit importance, the slices and their bytes, selective assembly), `training` (the
original model, NAIR's re-tuning, CLIO's retraining), `trained` (every model of a job, through
the model cache), `receive` (the head's payload; decoding, assembly and inference at the
server), `codecs` (the raw-input baselines' quantisation and JPEG), `analysis` (figures 5 and 6).
`sim/nair/` simulates the link on the clock and writes the reports.
"""

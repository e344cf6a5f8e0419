"""NoNN (Bhardwaj, Lin, Marculescu 2019): a teacher's knowledge split into disjoint students.

`models` (WRN teacher, NoNN students), `partition` (filter activation network, communities,
P0 and the k partitions), `budget` (student sizing to memory and FLOP budgets), `train` (KD,
activation transfer, attention transfer), `split` (the horizontally split baseline's per-layer
work and exchanges, from the real tensors). No clock: `sim/nonn.py` simulates the fleet.
"""

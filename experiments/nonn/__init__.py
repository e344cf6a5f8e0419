"""NoNN (Bhardwaj, Lin, Marculescu 2019): a teacher's knowledge split into disjoint students.

`models` (WRN teacher, NoNN students), `partition` (filter activation network, communities,
P0 and the k partitions), `budget` (student sizing to memory and FLOP budgets), `train` (KD,
activation transfer, attention transfer), `pipeline` (every model of a job, trained or cached),
`inference` (an inference's FLOPs and payloads, the students' features, the aggregator),
`split` (the horizontally split baseline's per-layer work and exchanges, from the real tensors),
`tables` (the tables that need no clock). No clock: `sim.nonn` simulates the fleet.
"""

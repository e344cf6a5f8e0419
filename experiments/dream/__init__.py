"""Dream Distillation (Bhardwaj, Suda and Marculescu, 2019): compress a teacher into students
without its training data, from metadata about its activations. No clock: `sim.dream` times it."""

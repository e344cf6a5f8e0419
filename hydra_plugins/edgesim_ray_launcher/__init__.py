"""A Hydra launcher that runs a multirun's jobs in parallel on Ray (see ray_launcher.py)."""

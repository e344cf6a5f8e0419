"""Golden CSVs: the default experiment, byte for byte against committed files (see regenerate.py)."""

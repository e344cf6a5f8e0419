"""End-to-end tests: whole jobs, usually `python -m sim` in a subprocess (marked `e2e` by tests/conftest.py)."""

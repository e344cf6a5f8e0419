"""Unit tests: fast, in-process tests of one piece each (marked `unit` by tests/conftest.py)."""

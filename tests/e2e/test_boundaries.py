"""The layers keep frameworks at the edges: the model layers are pure, only `sim` owns time."""

import subprocess
import sys

import pytest

FORBIDDEN = {
    "devices": ("simpy", "hydra", "ray", "torch", "flwr"),
    "channels": ("simpy", "hydra", "ray", "torch", "flwr"),
    "strategies": ("simpy", "hydra", "ray"),
    "experiments": ("simpy", "hydra", "ray", "sim"),
}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_does_not_import(package: str) -> None:
    code = (
        f"import sys, pkgutil, importlib, {package}\n"
        f"for m in pkgutil.iter_modules({package}.__path__): importlib.import_module('{package}.' + m.name)\n"
        f"bad = [m for m in {FORBIDDEN[package]!r} if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)

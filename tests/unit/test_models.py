"""Tests for experiments.common.models."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import nn

from experiments.common.data import load_digits
from experiments.common.metrics import count_params
from experiments.common.models import MLP, FedCNN, build_model, fedmax_cifar_cnn


@pytest.mark.parametrize("name", ["cnn", "mlp", "fedmax_cifar_cnn"])
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32)])
def test_logits_and_features(name: str, shape: tuple[int, int, int]) -> None:
    model = build_model(name, shape, 10, seed=0)
    x = torch.rand(4, *shape, generator=torch.Generator().manual_seed(0))
    logits, a = model.forward_with_features(x)
    assert logits.shape == (4, 10)
    assert a.dim() == 2 and a.shape[0] == 4 and a.shape[1] == model.head.in_features
    assert bool((a >= 0).all())
    assert torch.equal(model(x), logits) and torch.equal(model.features(x), a)
    assert torch.allclose(model.head(a), logits)


def test_fedmax_cifar_parameter_count() -> None:
    assert count_params(fedmax_cifar_cnn()) == 659_818
    assert count_params(build_model("fedmax_cifar_cnn", (3, 32, 32), 10)) == 659_818
    assert count_params(FedCNN((3, 32, 32), 10)) == 659_818
    convs = [m for m in fedmax_cifar_cnn().modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 5 and all(c.bias is None for c in convs)


def test_digits_default_is_small() -> None:
    assert 20_000 <= count_params(FedCNN((1, 8, 8), 10)) <= 120_000
    assert count_params(MLP((1, 8, 8), 10, hidden=64)) == 64 * 64 + 64 + 64 * 10 + 10


def test_seeded_init_is_deterministic_and_leaves_global_rng_alone() -> None:
    state = torch.get_rng_state()
    a, b, c = (build_model("cnn", (1, 8, 8), 10, seed=s) for s in (0, 0, 1))
    assert torch.equal(torch.get_rng_state(), state)
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(pa, pb)
    assert not torch.equal(a.state_dict()["fc.weight"], c.state_dict()["fc.weight"])


def test_unknown_model_name() -> None:
    with pytest.raises(ValueError, match=r"model.name='x': allowed: cnn, fedmax_cifar_cnn, mlp"):
        build_model("x", (1, 8, 8), 10)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny batches run fastest, and steadiest on a busy machine, on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.usefixtures("one_thread")
def test_cnn_learns_digits_quickly() -> None:
    ds = load_digits(seed=0)
    model = build_model("cnn", ds.input_shape, ds.num_classes, seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        order = torch.randperm(len(ds.y_train), generator=gen)
        for start in range(0, len(order), 32):
            batch = order[start : start + 32]
            opt.zero_grad()
            nn.functional.cross_entropy(model(ds.x_train[batch]), ds.y_train[batch]).backward()
            opt.step()
    with torch.no_grad():
        accuracy = (model(ds.x_test).argmax(1) == ds.y_test).float().mean().item()
    assert accuracy > 0.85

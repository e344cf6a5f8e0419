"""`ModelRecords` takes numpy views of a model's weights once: a parameter replaced after that
must never send stale weights (`record()` gives the model's current values) nor load into a
tensor the model no longer uses (`load()` writes into the new one).

Each case uses the records once (so the views exist), replaces the weights, then checks
`record()` against Flower's own `ArrayRecord(model.state_dict())` and `load()` against
`load_state_dict`.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from flwr.app import ArrayRecord
from torch import nn

from experiments.federated.records import ModelRecords


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


def _replace_data(m: nn.Module) -> None:
    m[0].weight.data = torch.randn(4, 3)


def _replace_parameter(m: nn.Module) -> None:
    m[2].weight = nn.Parameter(torch.randn(2, 4))


def _to_float64(m: nn.Module) -> None:
    m.to(torch.float64)


def _resize(m: nn.Module) -> None:
    m[2].bias.data = torch.randn(5)  # a different shape (the record follows it)


def _share(m: nn.Module) -> None:
    m[0].bias.data = m[2].weight.data[0, :4].clone()


REPLACEMENTS: dict[str, Callable[[nn.Module], None]] = {
    "p.data = torch.randn(...)": _replace_data,
    "module.weight = nn.Parameter(...)": _replace_parameter,
    "model.to(torch.float64)": _to_float64,
    "p.data = a tensor of another shape": _resize,
    "p.data = a copy of another parameter": _share,
}


def _assert_record_is_current(records: ModelRecords, model: nn.Module) -> None:
    ours, theirs = records.record(), ArrayRecord(model.state_dict())
    assert list(ours) == list(theirs)
    for name in theirs:
        a, b = ours[name], theirs[name]
        assert (a.dtype, tuple(a.shape), a.data) == (b.dtype, tuple(b.shape), b.data), f"stale {name}"


def _source_for(model: nn.Module) -> dict[str, torch.Tensor]:
    """Values of the model's current names, shapes and dtypes, all different from its own."""
    return {
        k: torch.full_like(v, 0.25) + torch.arange(v.numel(), dtype=v.dtype).reshape(v.shape)
        for k, v in model.state_dict().items()
    }


@pytest.mark.parametrize("replace", list(REPLACEMENTS), ids=list(REPLACEMENTS))
def test_record_after_a_replacement_gives_the_new_weights(replace) -> None:
    model = _model()
    records = ModelRecords(model)
    records.record()  # the views are taken and used
    REPLACEMENTS[replace](model)
    _assert_record_is_current(records, model)
    with torch.no_grad():
        next(model.parameters()).add_(1.0)  # an in-place change after the refresh shows too
    _assert_record_is_current(records, model)


@pytest.mark.parametrize("replace", list(REPLACEMENTS), ids=list(REPLACEMENTS))
def test_load_after_a_replacement_writes_into_the_new_tensors(replace) -> None:
    model = _model()
    records = ModelRecords(model)
    records.load(ArrayRecord(_source_for(model)))  # the views are taken and used
    REPLACEMENTS[replace](model)
    tensors = dict(model.state_dict(keep_vars=True))
    source = _source_for(model)
    records.load(ArrayRecord(source))
    after = dict(model.state_dict(keep_vars=True))
    for name, value in source.items():
        assert after[name] is tensors[name], f"{name}: load replaced the tensor instead of writing into it"
        assert torch.equal(after[name].detach(), value), f"{name}: not loaded"
    _assert_record_is_current(records, model)


def test_a_forward_pass_after_load_uses_the_loaded_weights() -> None:
    model = _model()
    records = ModelRecords(model)
    records.record()
    model.to(torch.float64)
    source = _source_for(model)
    records.load(ArrayRecord(source))
    twin = _model().to(torch.float64)
    twin.load_state_dict(source)
    x = torch.randn(5, 3, dtype=torch.float64)
    assert torch.equal(model(x), twin(x))


def _transpose(m: nn.Module) -> None:
    m[0].weight.data = m[0].weight.data.t()  # same storage, same (square) shape, other strides


def _reinterpret(m: nn.Module) -> None:
    m[0].weight.requires_grad_(False)
    m[0].weight.data = m[0].weight.data.view(torch.int32)  # same storage and shape, other dtype


@pytest.mark.parametrize("replace", [_transpose, _reinterpret], ids=["transposed", "reinterpreted"])
def test_another_view_of_the_same_storage_is_not_stale(replace) -> None:
    model = nn.Sequential(nn.Linear(3, 3, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.arange(9.0).reshape(3, 3))
    records = ModelRecords(model)
    records.record()
    replace(model)
    _assert_record_is_current(records, model)

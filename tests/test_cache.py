import torch

from experiments.cache import cache_key, cached_model


def _train(calls):
    def train(model):
        calls.append(1)
        with torch.no_grad():
            model.weight.fill_(0.25)
        return {"val_accuracy": 0.5}
    return train


def test_cache_trains_once_then_loads_the_same_weights(tmp_path):
    calls = []
    a = torch.nn.Linear(3, 2)
    meta, hit = cached_model(tmp_path, "m", {"seed": 1}, a, _train(calls))
    assert (meta, hit, len(calls)) == ({"val_accuracy": 0.5}, False, 1)
    b = torch.nn.Linear(3, 2)
    meta, hit = cached_model(tmp_path, "m", {"seed": 1}, b, _train(calls))
    assert (meta, hit, len(calls)) == ({"val_accuracy": 0.5}, True, 1)
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    cached_model(tmp_path, "m", {"seed": 2}, torch.nn.Linear(3, 2), _train(calls))
    assert len(calls) == 2  # another key: trained again
    assert not list(tmp_path.glob(".*tmp"))


def test_no_cache_dir_always_trains_and_damaged_files_are_replaced(tmp_path):
    calls = []
    cached_model(None, "m", {}, torch.nn.Linear(3, 2), _train(calls))
    cached_model(None, "m", {}, torch.nn.Linear(3, 2), _train(calls))
    assert len(calls) == 2
    (tmp_path / f"m-{cache_key({})}.pt").write_bytes(b"not a model")
    meta, hit = cached_model(tmp_path, "m", {}, torch.nn.Linear(3, 2), _train(calls))
    assert not hit and len(calls) == 3


def test_key_is_order_independent():
    assert cache_key({"a": 1, "b": 2}) == cache_key({"b": 2, "a": 1}) != cache_key({"a": 1, "b": 3})

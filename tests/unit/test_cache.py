import torch

from experiments.common.cache import Training, cache_key, train_cached
from sim.backends import LocalBackend


def _fill(model: torch.nn.Linear, value: float, calls: list) -> dict:
    """A training (module-level, as `executor.map` needs): sets the weights, counts the call."""
    calls.append(value)
    with torch.no_grad():
        model.weight.fill_(value)
        model.bias.copy_(torch.rand(2))  # from torch's global generator: the call's own seed
    return {"val_accuracy": value}


class Recorder(LocalBackend):
    """The local back end, noting how many calls each `map` got."""

    def __init__(self):
        super().__init__(torch_threads=1)
        self.maps: list[int] = []

    def map(self, fn, calls, seeds=None):
        self.maps.append(len(calls))
        return super().map(fn, calls, seeds)


def _training(key: dict, value: float, calls: list, seed: int = 0) -> Training:
    return Training("m", key, torch.nn.Linear(3, 2), _fill, (value, calls), seed=seed)


def test_cache_trains_once_then_loads_the_same_weights(tmp_path):
    calls, ex = [], Recorder()
    a = _training({"seed": 1}, 0.25, calls)
    assert train_cached(ex, tmp_path, [a]) == [({"val_accuracy": 0.25}, False)]
    b = _training({"seed": 1}, 0.25, calls)
    assert train_cached(ex, tmp_path, [b]) == [({"val_accuracy": 0.25}, True)]
    assert len(calls) == 1 and ex.maps == [1, 0]
    assert torch.equal(a.model.weight, b.model.weight) and torch.equal(a.model.bias, b.model.bias)
    train_cached(ex, tmp_path, [_training({"seed": 2}, 0.25, calls)])
    assert len(calls) == 2  # another key: trained again
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in tmp_path.glob("m-*.pt"))  # no temp file


def test_the_misses_train_together_in_order_under_their_seeds(tmp_path):
    calls, ex = [], Recorder()
    train_cached(ex, tmp_path, [_training({"i": 1}, 1 / 10, calls, seed=7)])
    batch = [_training({"i": i}, i / 10, calls, seed=7 if i == 1 else i) for i in range(4)]
    out = train_cached(ex, tmp_path, batch)
    assert ex.maps == [1, 3] and calls == [0.1, 0.0, 0.2, 0.3]  # one map for the three misses, in order
    assert [hit for _, hit in out] == [False, True, False, False]
    assert [m["val_accuracy"] for m, _ in out] == [0.0, 0.1, 0.2, 0.3]
    for t in batch:
        assert torch.allclose(t.model.weight, torch.full((2, 3), t.args[0]))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(t.seed)
            assert torch.equal(t.model.bias, torch.rand(2))
    assert len(list(tmp_path.glob("m-*.pt"))) == 4


def test_no_cache_dir_always_trains_and_damaged_files_are_replaced(tmp_path):
    calls, ex = [], Recorder()
    train_cached(ex, None, [_training({}, 0.5, calls)])
    train_cached(ex, None, [_training({}, 0.5, calls)])
    assert len(calls) == 2
    (tmp_path / f"m-{cache_key({}, 1)}.pt").write_bytes(b"not a model")
    [(meta, hit)] = train_cached(ex, tmp_path, [_training({}, 0.5, calls)])
    assert not hit and len(calls) == 3


def test_key_is_order_independent_and_names_the_thread_count():
    assert cache_key({"a": 1, "b": 2}) == cache_key({"b": 2, "a": 1}) != cache_key({"a": 1, "b": 3})
    assert cache_key({"a": 1}, 1) != cache_key({"a": 1}, 2)

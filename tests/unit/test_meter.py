"""The work meter: FLOPs match PyTorch's own counter, cached per shape; memory footprint."""

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from sim.meter import WorkMeter, parameter_bytes


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 64, 10))


def _step(model, opt, x, y):
    opt.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()


def test_training_flops_equal_flop_counter_and_are_cached():
    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    with FlopCounterMode(display=False) as fc:
        _step(model, opt, x, y)
    cache: dict = {}
    with WorkMeter(cache) as meter:
        for _ in range(5):
            _step(model, opt, x, y)
    assert meter.flops == 5 * fc.get_total_flops() > 0
    assert meter.calls == 5 and len(cache) == 1


def test_batch_shape_changes_the_count_and_inference_costs_less():
    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with WorkMeter() as train:
        _step(model, opt, torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,)))
        _step(model, opt, torch.randn(3, 1, 8, 8), torch.randint(0, 10, (3,)))
    with WorkMeter() as infer, torch.no_grad():
        model(torch.randn(11, 1, 8, 8))
    per_sample_train = train.flops / 11
    assert infer.flops / 11 < per_sample_train  # no backward pass
    assert infer.flops > 0


def test_peak_memory_counts_parameters_gradients_optimiser_and_activations():
    model = _net()
    x = torch.randn(16, 1, 8, 8)
    with WorkMeter(optimizer_copies=1) as meter:
        model(x).sum().backward()
    params = parameter_bytes(model)
    # activations of the leaves: conv 16x4x8x8, relu same, flatten 16x256, linear 16x10 (float32)
    acts = 4 * (16 * 4 * 64 * 2 + 16 * 256 + 16 * 10)
    assert meter.peak_bytes == 3 * params + acts


def test_meter_leaves_no_hooks_behind():
    model = _net()
    with WorkMeter() as meter:
        model(torch.randn(2, 1, 8, 8))
    before = meter.flops
    model(torch.randn(2, 1, 8, 8))
    assert meter.flops == before


def test_a_model_called_twice_in_one_step_and_seen_again_later():
    """The model's own hook must not drag the meter (and the tensors it holds) into the copy
    it measures; a repeated top-level call is counted each time."""
    model = _net()
    x = torch.randn(4, 1, 8, 8, requires_grad=True)
    with WorkMeter() as meter:
        (model(x * 2).sum() + model(x).sum()).backward()
        model(torch.randn(5, 1, 8, 8)).sum().backward()
    assert meter.calls == 3 and meter.flops > 0


def test_every_fresh_model_is_counted_even_when_python_reuses_an_address():
    """A ClientApp may build and drop several models in one call; a new model can take a freed
    one's id, and must still be seen."""
    x = torch.randn(2, 1, 8, 8)
    with WorkMeter() as meter:
        for _ in range(50):
            _net()(x)
    assert meter.calls == 50

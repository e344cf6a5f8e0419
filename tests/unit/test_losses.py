"""Every training loss against a hand computation on tiny tensors.

The expected values are computed step by step in float64 numpy, from the definitions the
functions' docstrings give (and the papers they cite), never by calling the function under
test. Losses that live inside a training loop (NoNN's joint loss, ATKD, NAIR's re-tuning,
CLIO) are reached by replacing the loop (`fit` / `_fit` of the function's own module) with one
that keeps the loss function, which is then called on a batch of our choosing.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from experiments.common.models import build_model
from experiments.federated.task import probe_activations, probe_model
from experiments.nair.model import ConvBN, SplitNet, Upsample, narrow_tail
from experiments.nair.training import SGDSettings as NairSettings
from experiments.nair.training import clio_alpha, nair_weights, retune_nair, train_clio
from experiments.nonn.models import WRN, NoNN, StudentSpec
from experiments.nonn.train import (
    DistillSettings,
    SGDSettings,
    TeacherTargets,
    activation_transfer_loss,
    attention,
    kd_loss,
    train_nonn,
    train_single,
)
from strategies.fedmax import activation_divergence
from strategies.objectives import FEDMAX_BETA_KEY, PROXIMAL_MU_KEY, ClientObjective, max_entropy_term

RTOL = 1e-5


# --- hand-written helpers (float64 numpy) ---------------------------------------------------
def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy()


def _log_softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise log softmax, written out: z - max - log(sum(exp(z - max)))."""
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def _cross_entropy(logits: np.ndarray, y: np.ndarray) -> float:
    """Mean over the batch of -log softmax(logits)[i, y_i]."""
    log_p = _log_softmax(logits)
    return float(np.mean([-log_p[i, y[i]] for i in range(len(y))]))


def _unit_rows(a: np.ndarray) -> np.ndarray:
    """Each sample flattened and divided by its L2 norm (at least 1e-12, F.normalize's floor)."""
    flat = a.reshape(len(a), -1)
    return flat / np.maximum(np.sqrt((flat**2).sum(axis=1, keepdims=True)), 1e-12)


def _grab(monkeypatch, fn, loop_name: str) -> list:
    """Replace `loop_name` in `fn`'s module by a loop that only keeps the loss function it gets
    (its last argument); the list it returns receives it."""
    kept = []

    def loop(*args):
        kept.append(args[-1])
        return [0.0]

    monkeypatch.setattr(sys.modules[fn.__module__], loop_name, loop)
    return kept


# --- NoNN ---------------------------------------------------------------------------------
def _kd_by_hand(s: np.ndarray, t: np.ndarray, y: np.ndarray, alpha: float, temp: float, scale: float) -> float:
    """(1 - alpha) CE(y, s) + alpha * scale * KL(softmax(t/T) || softmax(s/T)), the KL summed
    over classes and averaged over the batch."""
    log_ps, log_pt = _log_softmax(s / temp), _log_softmax(t / temp)
    kl = float((np.exp(log_pt) * (log_pt - log_ps)).sum() / len(s))
    return (1 - alpha) * _cross_entropy(s, y) + alpha * scale * kl


def test_kd_loss_is_ce_plus_scaled_kl_at_temperature() -> None:
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)
    y = torch.tensor([0, 3, 1])
    got = kd_loss(s, t, y, alpha=0.9, temperature=4.0, scale=32.0)
    assert float(got) == pytest.approx(_kd_by_hand(_np(s), _np(t), y.numpy(), 0.9, 4.0, 32.0), rel=RTOL)
    # alpha = 0: plain cross-entropy; identical logits: no KL
    assert float(kd_loss(s, t, y, 0.0, 4.0, 32.0)) == pytest.approx(_cross_entropy(_np(s), y.numpy()), rel=RTOL)
    assert float(kd_loss(s, s, y, 1.0, 4.0, 32.0)) == pytest.approx(0.0, abs=1e-5)  # float32 rounding, times 32


def test_kd_loss_has_the_gradient_of_soft_cross_entropy() -> None:
    """The docstring's claim: KL(teacher || student) and the paper's cross-entropy with the
    teacher's soft labels differ by the teacher's entropy, a constant for the student."""
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(2, 5, generator=g, requires_grad=True), torch.randn(2, 5, generator=g)
    y = torch.tensor([4, 0])
    (grad_kd,) = torch.autograd.grad(kd_loss(s, t, y, 0.7, 3.0, 18.0), s)
    soft_ce = -(F.softmax(t / 3.0, dim=1) * F.log_softmax(s / 3.0, dim=1)).sum(1).mean()
    (grad_ce,) = torch.autograd.grad(0.3 * F.cross_entropy(s, y) + 0.7 * 18.0 * soft_ce, s)
    assert torch.allclose(grad_kd, grad_ce, rtol=1e-5, atol=1e-7)


def test_activation_transfer_loss_sums_mean_squared_unit_map_distances() -> None:
    g = torch.Generator().manual_seed(2)
    students = [torch.randn(2, 1, 2, 2, generator=g), torch.randn(2, 2, 2, 2, generator=g)]
    teachers = [torch.randn(2, 1, 2, 2, generator=g), torch.randn(2, 2, 2, 2, generator=g)]
    expected = 0.0
    for s, t in zip(students, teachers):
        diff = _unit_rows(_np(s)) - _unit_rows(_np(t))
        expected += float((diff**2).sum() / diff.size)
    assert float(activation_transfer_loss(students, teachers)) == pytest.approx(expected, rel=RTOL)
    # the maps are compared after normalising: scaling a sample's map changes nothing
    scaled = [students[0] * torch.tensor([3.0, 0.5])[:, None, None, None], students[1]]
    assert float(activation_transfer_loss(scaled, teachers)) == pytest.approx(expected, rel=RTOL)


def test_attention_is_the_unit_mean_squared_activation_over_channels() -> None:
    h = torch.tensor([[[[1.0, -2.0], [0.0, 3.0]], [[1.0, 0.0], [2.0, -1.0]]]])  # (1, 2, 2, 2)
    # mean over the 2 channels of the squares: [1, 2, 2, 5]; its norm is sqrt(34)
    expected = np.array([[1.0, 2.0, 2.0, 5.0]]) / math.sqrt(34.0)
    np.testing.assert_allclose(_np(attention(h)), expected, rtol=RTOL)


def _targets(n: int, classes: int, fconv_channels: int, attention_sizes: list[int]) -> TeacherTargets:
    g = torch.Generator().manual_seed(3)
    return TeacherTargets(
        torch.randn(n, classes, generator=g),
        torch.rand(n, fconv_channels, 1, 1, generator=g),
        [F.normalize(torch.rand(n, a, generator=g), dim=1) for a in attention_sizes],
    )


def test_atkd_loss_is_kd_plus_half_beta_times_attention_distances(monkeypatch) -> None:
    """train_single with attention transfer: KD on the student's logits plus at_beta / 2 times
    the sum over groups of the mean squared difference of the attention maps."""
    torch.manual_seed(0)
    student = WRN(10, (2, 2, 2), 1, 3).eval()
    x, y = torch.randn(4, 1, 4, 4), torch.tensor([0, 1, 2, 1])
    targets = _targets(4, 3, 2, [16, 4, 1])  # group maps of 4x4, 2x2 and 1x1
    d = DistillSettings(alpha=0.8, temperature=2.0, kd_scale=8.0, at_beta=50.0)
    kept = _grab(monkeypatch, train_single, "fit")
    train_single(student, x, y, targets, SGDSettings(epochs=1), d, attention_transfer=True)
    train_single(student, x, y, targets, SGDSettings(epochs=1), d, attention_transfer=False)
    idx = torch.tensor([2, 0])
    with torch.no_grad():
        groups, f = student.features(x[idx])
        logits = student.head(f)
    kd = _kd_by_hand(_np(logits), _np(targets.logits[idx]), y[idx].numpy(), 0.8, 2.0, 8.0)
    at = 0.0
    for g, h in enumerate(groups):
        sq = (_np(h) ** 2).mean(axis=1)  # mean over channels
        diff = _unit_rows(sq) - _np(targets.attention[g][idx])
        at += float((diff**2).mean())
    with torch.no_grad():
        assert float(kept[0](idx)) == pytest.approx(kd + 50.0 / 2 * at, rel=RTOL)
        assert float(kept[1](idx)) == pytest.approx(kd, rel=RTOL)


def test_nonn_loss_is_kd_on_the_aggregate_plus_beta_times_activation_transfer(monkeypatch) -> None:
    """train_nonn: KD on the aggregated logits plus beta times the activation transfer of
    student i's map onto teacher partition order[i] (KD alone when ablated)."""
    torch.manual_seed(0)
    order = [[2, 0], [1]]
    model = NoNN(StudentSpec(10, (2, 2, 2)), [len(p) for p in order], 1, 3).eval()
    with torch.no_grad():
        for branch in model.branches:  # maps away from ReLU's zero, so that they have a direction
            branch.bn_out.bias.fill_(0.5)
    x, y = torch.randn(3, 1, 4, 4), torch.tensor([2, 0, 1])
    targets = _targets(3, 3, 3, [16, 4, 1])
    d = DistillSettings(alpha=0.6, temperature=3.0, kd_scale=18.0, beta=200.0)
    kept = _grab(monkeypatch, train_nonn, "fit")
    train_nonn(model, x, y, targets, order, SGDSettings(epochs=1), d)
    train_nonn(model, x, y, targets, order, SGDSettings(epochs=1), d, activation_transfer=False)
    idx = torch.tensor([1, 2])
    with torch.no_grad():
        logits, maps = model.forward_with_maps(x[idx])
    kd = _kd_by_hand(_np(logits), _np(targets.logits[idx]), y[idx].numpy(), 0.6, 3.0, 18.0)
    fconv = _np(targets.fconv[idx])
    at = sum(float(((_unit_rows(_np(m)) - _unit_rows(fconv[:, p])) ** 2).mean()) for m, p in zip(maps, order))
    with torch.no_grad():
        assert float(kept[0](idx)) == pytest.approx(kd + 200.0 * at, rel=RTOL)
        assert float(kept[1](idx)) == pytest.approx(kd, rel=RTOL)


# --- FedMAX -------------------------------------------------------------------------------
def test_max_entropy_term_is_kl_from_uniform_averaged_over_all_elements() -> None:
    a = torch.tensor([[0.5, -1.0, 2.0], [0.0, 0.0, 1.0]])
    b, d = a.shape
    log_p = _log_softmax(_np(a))
    # KLDivLoss(reduction="mean") with target U: the mean over B*D of U * (log U - log p)
    expected = sum((1 / d) * (math.log(1 / d) - log_p[i, j]) for i in range(b) for j in range(d)) / (b * d)
    assert float(max_entropy_term(a)) == pytest.approx(expected, rel=RTOL)
    # the authors' KLDivLoss(reduction="mean"): the elementwise sum over B*D (spelt out, as
    # torch warns that "mean" will change meaning)
    authors = F.kl_div(F.log_softmax(a, dim=1), torch.full_like(a, 1 / d), reduction="sum") / (b * d)
    assert float(max_entropy_term(a)) == pytest.approx(float(authors), rel=RTOL)
    assert float(max_entropy_term(torch.ones(2, 4))) == pytest.approx(0.0, abs=1e-7)  # already uniform


def test_client_objective_adds_beta_entropy_and_proximal_terms() -> None:
    logits, y = torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([0, 0])
    features = torch.tensor([[1.0, 2.0, 3.0], [0.0, -1.0, 0.5]])
    params = [torch.tensor([1.0, 2.0]), torch.tensor([[0.5]])]
    global_params = [torch.tensor([0.0, 1.0]), torch.tensor([[1.5]])]
    obj = ClientObjective.from_config({FEDMAX_BETA_KEY: 10.0, PROXIMAL_MU_KEY: 0.2})
    assert (obj.beta, obj.mu, obj.needs_features) == (10.0, 0.2, True)
    log_p = _log_softmax(_np(features))
    entropy = float(((math.log(1 / 3) - log_p) / 3).mean())
    prox = (1 - 0) ** 2 + (2 - 1) ** 2 + (0.5 - 1.5) ** 2
    expected = _cross_entropy(_np(logits), y.numpy()) + 10.0 * entropy + 0.5 * 0.2 * prox
    assert float(obj.loss(logits, y, features, params, global_params)) == pytest.approx(expected, rel=RTOL)
    plain = ClientObjective.from_config({})
    assert float(plain.loss(logits, y)) == pytest.approx(_cross_entropy(_np(logits), y.numpy()), rel=RTOL)
    with pytest.raises(ValueError, match="last hidden activation"):
        obj.loss(logits, y)


def test_activation_divergence_is_mean_kl_to_the_clients_mean_per_probe_image() -> None:
    # 3 clients x 2 probe images x 3 activations (post-ReLU: non-negative)
    a = np.array(
        [
            [[1.0, 0.0, 3.0], [2.0, 2.0, 0.0]],
            [[0.0, 1.0, 1.0], [1.0, 1.0, 2.0]],
            [[2.0, 2.0, 0.0], [0.0, 0.0, 0.0]],  # image 2: a dead vector counts as uniform
        ]
    )
    kls = []
    for img in range(2):
        q = []
        for row in a[:, img]:
            total = sum(row)
            q.append([x / total for x in row] if total > 0 else [1 / 3] * 3)
        q_bar = [sum(q[i][j] for i in range(3)) / 3 for j in range(3)]
        kls += [sum(p * math.log(p / m) for p, m in zip(qi, q_bar) if p > 0) for qi in q]
    assert activation_divergence(a) == pytest.approx(sum(kls) / 6, rel=1e-12)
    # the same direction for every client (whatever the scale): no divergence
    same = np.stack([np.array([[0.5, 1.0, 0.0]]) * s for s in (1.0, 3.0, 10.0)])
    assert activation_divergence(same) == pytest.approx(0.0, abs=1e-15)
    # clients on disjoint units: the largest divergence, log(clients)
    assert activation_divergence(np.eye(3)[:, None, :]) == pytest.approx(math.log(3), rel=1e-12)
    assert math.isnan(activation_divergence(np.zeros((0, 2, 3))))
    assert math.isnan(activation_divergence(np.zeros((2, 3))))  # not (clients, images, D)
    assert math.isnan(activation_divergence(np.full((2, 1, 3), np.nan)))
    with pytest.raises(ValueError, match="non-negative"):
        activation_divergence(-np.ones((2, 1, 3)))


def test_probe_activations_are_taken_in_eval_mode_and_leave_the_mode_as_it_was() -> None:
    class Dropped(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc, self.drop = torch.nn.Linear(4, 8), torch.nn.Dropout(0.5)

        def forward(self, x, with_features=False):
            a = torch.relu(self.drop(self.fc(x)))
            return (a.sum(1), a) if with_features else a.sum(1)

    model, x = Dropped(), torch.rand(5, 4)
    model.train()
    got = probe_activations(model, x)
    assert model.training and got.dtype == np.float32 and got.shape == (5, 8)
    np.testing.assert_array_equal(got, torch.relu(model.fc(x)).detach().numpy())  # no dropout: eval mode


@pytest.mark.parametrize(
    ("name", "shape"), [("cnn", (1, 8, 8)), ("cnn", (3, 16, 16)), ("fedmax_cifar_cnn", (3, 32, 32)), ("mlp", (1, 8, 8))]
)
def test_the_probes_own_model_gives_the_same_activations_bit_for_bit(name, shape) -> None:
    # the probe's model pools channels-last (faster); a maximum is exact, so nothing may move
    model = build_model(name, shape, 10, seed=3)
    probe = probe_model(build_model(name, shape, 10, seed=4))
    probe.load_state_dict(model.state_dict())
    assert list(probe.state_dict()) == list(model.state_dict())
    x = torch.rand(64, *shape, generator=torch.Generator().manual_seed(5))
    np.testing.assert_array_equal(probe_activations(probe, x), probe_activations(model, x))


@pytest.mark.parametrize(
    "pool",
    [
        nn.MaxPool2d(2),
        nn.MaxPool2d(3, stride=2, padding=1),
        nn.MaxPool2d(3, stride=2, ceil_mode=True),
        nn.MaxPool2d(2, dilation=2),
        nn.MaxPool2d(2, return_indices=True),
    ],
)
def test_the_probes_max_pool_is_torchs_to_the_bit_nan_and_infinities_included(pool) -> None:
    x = torch.randn(4, 5, 9, 9, generator=torch.Generator().manual_seed(0))
    x[0, 0, 0, 0], x[1, 2, 3, 3], x[2] = math.nan, -math.inf, 0.0  # NaN, -inf, ties
    x[3, :, :4] = math.inf
    fast = probe_model(nn.Sequential(pool))[0]
    assert type(fast) is not nn.MaxPool2d  # replaced (with return_indices it falls back to torch's path)
    for inp in (x, x[:, :, 1:, 1:], x[0]):  # contiguous; a strided view and an unbatched map (torch's own path)
        want, got = pool(inp), fast(inp)
        for w, g in zip(*(t if isinstance(t, tuple) else (t,) for t in (want, got))):
            assert torch.equal(w.nan_to_num(7.0), g.nan_to_num(7.0)) and torch.equal(w.isnan(), g.isnan())
            assert w.stride() == g.stride()


def test_softmax_uniformity_is_not_what_the_divergence_measures() -> None:
    # FedMAX's term pushes softmax(a) towards uniform: activations differing by little in absolute
    # terms. Two clients whose activations are small (softmax(a) ~ uniform for both) but point in
    # different directions still diverge.
    a = np.array([[[1e-3, 0.0, 0.0]], [[0.0, 1e-3, 0.0]]])
    assert activation_divergence(a) == pytest.approx(math.log(2), rel=1e-12)


# --- NAIR and CLIO --------------------------------------------------------------------------
UNITS, CPU = 3, 2  # 3 units of 2 channels at the split layer


def _tiny_splitnet() -> SplitNet:
    """Stage 1 (the split layer, 6 channels) and stage 2, on 4x4 images; batch norms with
    non-trivial scales (one negative) and running variances, in eval mode."""
    torch.manual_seed(0)
    net = SplitNet(Upsample(4), [ConvBN(1, UNITS * CPU, 3), ConvBN(UNITS * CPU, 4, 1)], nn.Linear(4, 3))
    with torch.no_grad():
        bn = net.stages[0].bn
        bn.weight.copy_(torch.tensor([1.0, -0.5, 2.0, 0.3, 1.5, -1.0]))
        bn.running_var.copy_(torch.tensor([0.5, 1.0, 2.0, 4.0, 1.0, 0.25]))
        bn.running_mean.copy_(torch.linspace(-0.2, 0.3, UNITS * CPU))
    return net.eval()


def _importance_by_hand(net: SplitNet, fold_bn: bool = True) -> np.ndarray:
    """Eq. 8: per unit, the sum over its channels of the L1 norm of the filter, each scaled
    by |gamma| / sqrt(running_var + eps) when folded."""
    conv, bn = net.stages[0].conv, net.stages[0].bn
    w = _np(conv.weight)
    per_filter = np.array([np.abs(w[c]).sum() for c in range(UNITS * CPU)])
    if fold_bn:
        per_filter = per_filter * np.abs(_np(bn.weight)) / np.sqrt(_np(bn.running_var) + bn.eps)
    return np.array([per_filter[u * CPU : (u + 1) * CPU].sum() for u in range(UNITS)])


def _width_ce(net: SplitNet, xb: torch.Tensor, yb: torch.Tensor, units: list[int]) -> float:
    """CE of the tail fed O_1 with only `units` kept (the other channels zero)."""
    with torch.no_grad():
        o = net.forward_to(xb, 1).clone()
        for u in range(UNITS):
            if u not in units:
                o[:, u * CPU : (u + 1) * CPU] = 0.0
        return _cross_entropy(_np(net.tail(1)(o)), yb.numpy())


def test_nair_weights_are_one_minus_cumulative_importance_share_to_w_non() -> None:
    imp = torch.tensor([2.0, 5.0, 1.0, 2.0])
    order = [1, 0, 3, 2]  # descending importance: 5, 2, 2, 1; cumulative 5, 7, 9, 10
    expected = [(1 - 5 / 10) ** 3, (1 - 7 / 10) ** 3, (1 - 9 / 10) ** 3, 1.0]  # w_J = 1
    np.testing.assert_allclose(_np(nair_weights(imp, order, w_non=3.0)), expected, rtol=RTOL)


@pytest.mark.parametrize(
    ("use_weight", "use_penalty", "fold_bn"),
    [(True, True, True), (False, True, True), (True, False, True), (True, True, False)],
)
def test_nair_retuning_loss_is_weighted_ce_over_prefixes_plus_penalty(
    monkeypatch, use_weight, use_penalty, fold_bn
) -> None:
    """Eqs. 11-13: sum_j w_j CE_j over the importance-ordered prefixes, plus penalty_weight times
    P, the importance of every unit but the most important one, from the current weights."""
    net = _tiny_splitnet()
    imp = _importance_by_hand(net, fold_bn)
    order = sorted(range(UNITS), key=lambda u: -imp[u])
    r_cum = np.cumsum(imp[order])
    w = [(1 - r_cum[j] / r_cum[-1]) ** 2.0 for j in range(UNITS - 1)] + [1.0] if use_weight else [1.0] * UNITS
    kept = _grab(monkeypatch, retune_nair, "_fit")
    out = retune_nair(
        net,
        1,
        order,
        CPU,
        torch.zeros(1, 1, 4, 4),
        torch.zeros(1, dtype=torch.long),
        NairSettings(epochs=1, lr=0.1, batch_size=4),
        w_non=2.0,
        penalty_weight=0.05,
        use_weight=use_weight,
        use_penalty=use_penalty,
        fold_bn=fold_bn,
    )
    np.testing.assert_allclose(out["weights"], w, rtol=RTOL)
    xb, yb = torch.randn(5, 1, 4, 4), torch.tensor([0, 1, 2, 1, 0])

    def expected() -> float:
        ce = sum(w[j] * _width_ce(net, xb, yb, order[: j + 1]) for j in range(UNITS))
        penalty = 0.05 * _importance_by_hand(net, fold_bn)[order[1:]].sum() if use_penalty else 0.0
        return ce + penalty

    with torch.no_grad():
        assert float(kept[0](xb, yb)) == pytest.approx(expected(), rel=RTOL)
        net.stages[0].conv.weight.mul_(1.5)  # P follows the current weights; w_j stay
        assert float(kept[0](xb, yb)) == pytest.approx(expected(), rel=RTOL)


def test_clio_alpha_is_reversed_width_rank_to_the_emphasis_scaled_to_mean_one() -> None:
    np.testing.assert_allclose(_np(clio_alpha(4, 1.0)), np.array([4, 3, 2, 1]) / 2.5, rtol=RTOL)
    sq = np.array([16.0, 9.0, 4.0, 1.0])
    np.testing.assert_allclose(_np(clio_alpha(4, 2.0)), sq / sq.mean(), rtol=RTOL)
    np.testing.assert_allclose(_np(clio_alpha(3, 0.0)), np.ones(3), rtol=RTOL)


def test_clio_single_tail_loss_sums_alpha_weighted_ce_over_native_prefixes(monkeypatch) -> None:
    net = _tiny_splitnet()
    kept = _grab(monkeypatch, train_clio, "_fit")
    s = NairSettings(epochs=1, lr=0.1, batch_size=4, seed=5)
    out = train_clio(
        net, 1, CPU, torch.zeros(1, 1, 4, 4), torch.zeros(1, dtype=torch.long), s, head_emphasis=1.0, mode="sum"
    )
    train_clio(
        net, 1, CPU, torch.zeros(1, 1, 4, 4), torch.zeros(1, dtype=torch.long), s, head_emphasis=1.0, mode="sample"
    )
    alpha = [3 / 2, 2 / 2, 1 / 2]  # (J - j + 1) / mean, J = 3
    np.testing.assert_allclose(out["alpha"], alpha, rtol=RTOL)
    xb, yb = torch.randn(4, 1, 4, 4), torch.tensor([2, 1, 0, 0])
    ce = [_width_ce(net, xb, yb, list(range(j + 1))) for j in range(UNITS)]  # native order, not importance
    drawn = int(torch.multinomial(torch.tensor(alpha), 1, generator=torch.Generator().manual_seed(s.seed + 1)))
    with torch.no_grad():
        assert float(kept[0](xb, yb)) == pytest.approx(sum(a * c for a, c in zip(alpha, ce)), rel=RTOL)
        assert float(kept[1](xb, yb)) == pytest.approx(ce[drawn], rel=RTOL)  # one width, weight 1


def test_clio_multi_tail_loss_feeds_each_tail_its_prefix_of_channels(monkeypatch) -> None:
    net = _tiny_splitnet()
    torch.manual_seed(1)
    tails = [narrow_tail(net, 1, (j + 1) * CPU).eval() for j in range(UNITS)]
    kept = _grab(monkeypatch, train_clio, "_fit")
    train_clio(
        net,
        1,
        CPU,
        torch.zeros(1, 1, 4, 4),
        torch.zeros(1, dtype=torch.long),
        NairSettings(epochs=1, lr=0.1, batch_size=4),
        tails=tails,
        head_emphasis=2.0,
        mode="sum",
    )
    alpha = np.array([9.0, 4.0, 1.0]) / (14 / 3)
    xb, yb = torch.randn(3, 1, 4, 4), torch.tensor([1, 1, 2])
    with torch.no_grad():
        o = net.forward_to(xb, 1)
        ce = [_cross_entropy(_np(tails[j](o[:, : (j + 1) * CPU])), yb.numpy()) for j in range(UNITS)]
        assert float(kept[0](xb, yb)) == pytest.approx(float((alpha * np.array(ce)).sum()), rel=RTOL)


def test_clio_default_training_draws_one_width_per_minibatch_with_probability_alpha(monkeypatch) -> None:
    """The paper's eqs. 3-4 as CLIO's code trains them (the default mode): each minibatch is the
    CE of one width, drawn with probability alpha_j / J from the seed's own generator."""
    net = _tiny_splitnet()
    torch.manual_seed(1)
    tails = [narrow_tail(net, 1, (j + 1) * CPU).eval() for j in range(UNITS)]
    kept = _grab(monkeypatch, train_clio, "_fit")
    s = NairSettings(epochs=1, lr=0.1, batch_size=4, seed=3)
    train_clio(
        net, 1, CPU, torch.zeros(1, 1, 4, 4), torch.zeros(1, dtype=torch.long), s, tails=tails, head_emphasis=2.0
    )
    alpha = torch.tensor([9.0, 4.0, 1.0]) / (14 / 3)
    draws = torch.Generator().manual_seed(s.seed + 1)
    xb, yb = torch.randn(3, 1, 4, 4), torch.tensor([1, 1, 2])
    with torch.no_grad():
        o = net.forward_to(xb, 1)
        ce = [_cross_entropy(_np(tails[j](o[:, : (j + 1) * CPU])), yb.numpy()) for j in range(UNITS)]
        seen = []
        for _ in range(12):
            j = int(torch.multinomial(alpha, 1, generator=draws))
            assert float(kept[0](xb, yb)) == pytest.approx(ce[j], rel=RTOL)  # that width alone, weight 1
            seen.append(j)
    assert seen.count(0) > seen.count(2)  # the narrow width is drawn most (alpha 9 : 4 : 1)

"""SDMLoss against hand-computed values."""
import math

import pytest
import torch

from mdrl_plugin.registry import MODELS

EPS = 1e-8


def kl_row(logits: list, q: list, eps: float = EPS) -> float:
    """sum_j p_j (log p_j - log(q_j + eps)) with p = softmax(logits)."""
    top = max(logits)
    exps = [math.exp(v - top) for v in logits]
    total = sum(exps)
    p = [e / total for e in exps]
    return sum(pj * (math.log(pj) - math.log(qj + eps))
               for pj, qj in zip(p, q) if pj > 0)


def test_registered_and_defaults():
    loss = MODELS.build(dict(type='SDMLoss'))
    assert type(loss).__name__ == 'SDMLoss'
    assert loss.temperature == 0.02  # IRRA's logit scale 50
    assert loss.eps == 1e-8
    assert loss.loss_weight == 1.0
    assert loss.gather_across_ranks is False


def test_2x2_hand_computed():
    image = torch.tensor([[1., 0.], [0., 1.]], dtype=torch.float64)
    text = torch.tensor([[2., 0.], [0., 3.]], dtype=torch.float64)
    labels = torch.tensor([0, 1])
    # cos = identity; / 0.5 -> logits [[2, 0], [0, 2]] in both directions.
    e2 = math.e**2
    a, b = e2 / (e2 + 1), 1 / (e2 + 1)
    row = a * (math.log(a) - math.log(1 + EPS)) + \
        b * (math.log(b) - math.log(EPS))
    expected = 2 * row  # i2t mean + t2i mean, every row equal
    # By hand: 0.8808*(-0.1269) + 0.1192*(-2.1269 + 18.4207) = 1.8304.
    assert expected == pytest.approx(3.6608, abs=1e-3)
    loss = MODELS.build(dict(type='SDMLoss', temperature=0.5))(
        image, text, labels)
    assert loss.dim() == 0
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    # Scaling a feature leaves cosine similarities (and SDM) unchanged.
    loss_scaled = MODELS.build(dict(type='SDMLoss', temperature=0.5))(
        image * 7, text, labels)
    assert loss_scaled.item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize('temperature', [0.02, 0.5])
def test_3x3_repeated_identity_hand_computed(temperature):
    image = torch.tensor([[1., 0.], [1., 1.], [0., 2.]], dtype=torch.float64)
    text = torch.tensor([[3., 4.], [1., 0.], [0., -1.]], dtype=torch.float64)
    labels = torch.tensor([4, 4, 9])
    r = 1 / math.sqrt(2)
    cos_i2t = [[0.6, 1.0, 0.0], [1.4 * r, r, -r], [0.8, 0.0, -1.0]]
    cos_t2i = [[0.6, 1.4 * r, 0.8], [1.0, r, 0.0], [0.0, -r, -1.0]]
    q = [[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]
    expected = 0.0
    for cos in (cos_i2t, cos_t2i):
        expected += sum(
            kl_row([c / temperature for c in row], qi)
            for row, qi in zip(cos, q)) / 3
    loss = MODELS.build(dict(type='SDMLoss', temperature=temperature))(
        image, text, labels)
    assert loss.item() == pytest.approx(expected, rel=1e-10)


def test_loss_weight_scales():
    torch.manual_seed(0)
    image, text = torch.randn(5, 8), torch.randn(5, 8)
    labels = torch.tensor([0, 1, 1, 2, 3])
    base = MODELS.build(dict(type='SDMLoss'))(image, text, labels)
    scaled = MODELS.build(dict(type='SDMLoss', loss_weight=3.0))(
        image, text, labels)
    torch.testing.assert_close(scaled, base * 3.0)


def test_gradients_finite_nonzero_and_match_finite_differences():
    torch.manual_seed(0)
    image = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    text = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 1, 0, 2])
    loss_fn = MODELS.build(dict(type='SDMLoss', temperature=0.1))
    loss_fn(image, text, labels).backward()
    for grad in (image.grad, text.grad):
        assert torch.isfinite(grad).all()
        assert grad.abs().sum() > 0
    assert torch.autograd.gradcheck(
        lambda x, z: loss_fn(x, z, labels), (image, text))


def test_aligned_features_beat_random_features():
    loss_fn = MODELS.build(dict(type='SDMLoss'))
    labels = torch.arange(6)
    aligned = torch.eye(6, 16)
    torch.manual_seed(0)
    random = loss_fn(torch.randn(6, 16), torch.randn(6, 16), labels)
    assert loss_fn(aligned, aligned.clone(), labels) < random


@pytest.mark.parametrize('temperature', [0, -0.1])
def test_bad_temperature_rejected(temperature):
    with pytest.raises(ValueError) as err:
        MODELS.build(dict(type='SDMLoss', temperature=temperature))
    assert str(err.value) == \
        f'SDMLoss: temperature must be > 0, got {temperature}'


def test_bad_input_names_the_loss():
    with pytest.raises(ValueError) as err:
        MODELS.build(dict(type='SDMLoss'))(
            torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 1).long())
    assert str(err.value) == \
        'SDMLoss: labels must have shape [B] = [2], got (2, 1)'

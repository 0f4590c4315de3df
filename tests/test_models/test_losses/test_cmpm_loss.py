"""CMPMLoss against hand-computed values."""
import math

import pytest
import torch

from mdrl_plugin.registry import MODELS

EPS = 1e-8


def kl_row(logits: list, q: list, eps: float = EPS) -> float:
    """sum_j p_j (log p_j - log(q_j + eps)) with p = softmax(logits)."""
    exps = [math.exp(v) for v in logits]
    total = sum(exps)
    p = [e / total for e in exps]
    return sum(pj * (math.log(pj) - math.log(qj + eps))
               for pj, qj in zip(p, q))


def test_registered_and_defaults():
    loss = MODELS.build(dict(type='CMPMLoss'))
    assert type(loss).__name__ == 'CMPMLoss'
    assert loss.eps == 1e-8
    assert loss.loss_weight == 1.0
    assert loss.gather_across_ranks is False


def test_2x2_hand_computed():
    # x1 = e1, x2 = e2; z1 = 2 e1, z2 = 3 e2 (|z1| = 2, |z2| = 3).
    image = torch.tensor([[1., 0.], [0., 1.]], dtype=torch.float64)
    text = torch.tensor([[2., 0.], [0., 3.]], dtype=torch.float64)
    labels = torch.tensor([0, 1])
    # i2t logits x_i . z_j/|z_j| = [[1, 0], [0, 1]];
    # t2i logits z_i . x_j/|x_j| = [[2, 0], [0, 3]]; q = identity.
    e = math.e
    a1, b1 = e / (e + 1), 1 / (e + 1)
    i2t_row = a1 * (math.log(a1) - math.log(1 + EPS)) + \
        b1 * (math.log(b1) - math.log(EPS))
    a2, b2 = e**2 / (e**2 + 1), 1 / (e**2 + 1)
    a3, b3 = e**3 / (e**3 + 1), 1 / (e**3 + 1)
    t2i_row1 = a2 * (math.log(a2) - math.log(1 + EPS)) + \
        b2 * (math.log(b2) - math.log(EPS))
    t2i_row2 = a3 * (math.log(a3) - math.log(1 + EPS)) + \
        b3 * (math.log(b3) - math.log(EPS))
    expected = i2t_row + (t2i_row1 + t2i_row2) / 2
    # Worked by hand: i2t row 0.7311*(-0.3133) + 0.2689*(-1.3133 + 18.4207)
    # = 4.3712; t2i rows 1.8304 and 0.6828; 4.3712 + (1.8304 + 0.6828) / 2.
    assert expected == pytest.approx(5.6285, abs=1e-3)

    loss = MODELS.build(dict(type='CMPMLoss'))(image, text, labels)
    assert loss.dim() == 0
    assert loss.item() == pytest.approx(expected, rel=1e-12)


def test_3x3_repeated_identity_hand_computed():
    image = torch.tensor([[1., 0.], [1., 1.], [0., 2.]], dtype=torch.float64)
    text = torch.tensor([[3., 4.], [1., 0.], [0., -1.]], dtype=torch.float64)
    labels = torch.tensor([7, 7, 3])  # samples 0 and 1 share an identity
    # Normalised text: [.6, .8], [1, 0], [0, -1];
    # normalised image: [1, 0], [1/sqrt2, 1/sqrt2], [0, 1].
    r = 1 / math.sqrt(2)
    i2t_logits = [[0.6, 1.0, 0.0], [1.4, 1.0, -1.0], [1.6, 0.0, -2.0]]
    t2i_logits = [[3.0, 7 * r, 4.0], [1.0, r, 0.0], [0.0, -r, -1.0]]
    q = [[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]
    expected = sum(kl_row(lg, qi) for lg, qi in zip(i2t_logits, q)) / 3 + \
        sum(kl_row(lg, qi) for lg, qi in zip(t2i_logits, q)) / 3

    loss = MODELS.build(dict(type='CMPMLoss'))(image, text, labels)
    assert loss.item() == pytest.approx(expected, rel=1e-12)

    # Treating the repeated identity as two identities changes the loss.
    distinct = MODELS.build(dict(type='CMPMLoss'))(
        image, text, torch.tensor([0, 1, 2]))
    assert distinct.item() != pytest.approx(expected, rel=1e-3)


def test_eps_enters_the_log():
    image = torch.tensor([[1., 0.], [0., 1.]], dtype=torch.float64)
    text = image.clone()
    labels = torch.tensor([0, 1])
    loss = MODELS.build(dict(type='CMPMLoss', eps=1e-2))(image, text, labels)
    row = kl_row([1.0, 0.0], [1.0, 0.0], eps=1e-2)
    assert loss.item() == pytest.approx(2 * row, rel=1e-12)


def test_loss_weight_scales():
    torch.manual_seed(0)
    image, text = torch.randn(5, 8), torch.randn(5, 8)
    labels = torch.tensor([0, 1, 1, 2, 3])
    base = MODELS.build(dict(type='CMPMLoss'))(image, text, labels)
    scaled = MODELS.build(dict(type='CMPMLoss', loss_weight=0.25))(
        image, text, labels)
    torch.testing.assert_close(scaled, base * 0.25)


def test_gradients_finite_nonzero_and_match_finite_differences():
    torch.manual_seed(0)
    image = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    text = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 1, 0, 2])
    loss_fn = MODELS.build(dict(type='CMPMLoss'))
    loss_fn(image, text, labels).backward()
    for grad in (image.grad, text.grad):
        assert torch.isfinite(grad).all()
        assert grad.abs().sum() > 0
    assert torch.autograd.gradcheck(
        lambda x, z: loss_fn(x, z, labels), (image, text))


def test_perfect_alignment_beats_random_features():
    loss_fn = MODELS.build(dict(type='CMPMLoss'))
    labels = torch.arange(6)
    aligned = 20 * torch.eye(6, 16)
    perfect = loss_fn(aligned, aligned.clone(), labels)
    torch.manual_seed(0)
    random = loss_fn(torch.randn(6, 16), torch.randn(6, 16), labels)
    assert perfect.item() < 1e-3
    assert random.item() > 1.0
    assert perfect < random


def test_half_precision_is_computed_in_float32():
    torch.manual_seed(0)
    image = torch.randn(4, 8).bfloat16().requires_grad_(True)
    text = torch.randn(4, 8).bfloat16()
    labels = torch.tensor([0, 1, 2, 3])
    loss = MODELS.build(dict(type='CMPMLoss'))(image, text, labels)
    assert loss.dtype == torch.float32
    ref = MODELS.build(dict(type='CMPMLoss'))(image.float(), text.float(),
                                              labels)
    torch.testing.assert_close(loss, ref)
    loss.backward()
    assert image.grad.dtype == torch.bfloat16


def test_gather_without_distributed_is_the_plain_loss():
    torch.manual_seed(0)
    image, text = torch.randn(5, 8), torch.randn(5, 8)
    labels = torch.tensor([0, 1, 1, 2, 3])
    plain = MODELS.build(dict(type='CMPMLoss'))(image, text, labels)
    gathered = MODELS.build(dict(type='CMPMLoss', gather_across_ranks=True))(
        image, text, labels)
    torch.testing.assert_close(gathered, plain, rtol=0, atol=0)


@pytest.mark.parametrize('args, message', [
    ((torch.zeros(3, 4), torch.zeros(3, 5), torch.arange(3)),
     'CMPMLoss: image_feats and text_feats must have the same shape [B, D], '
     'got (3, 4) and (3, 5)'),
    ((torch.zeros(3, 4, 1), torch.zeros(3, 4), torch.arange(3)),
     'CMPMLoss: image_feats must have shape [B, D], got (3, 4, 1)'),
    ((torch.zeros(3, 4), torch.zeros(3, 4), torch.arange(2)),
     'CMPMLoss: labels must have shape [B] = [3], got (2,)'),
    ((torch.zeros(3, 4), torch.zeros(3, 4), torch.zeros(3)),
     'CMPMLoss: labels must be integer identity labels, got torch.float32'),
    ((torch.zeros(3, 4), torch.zeros(3, 4), torch.ones(3, dtype=torch.bool)),
     'CMPMLoss: labels must be integer identity labels, got torch.bool'),
    ((torch.zeros(3, 4, dtype=torch.long), torch.zeros(3, 4),
      torch.arange(3)),
     'CMPMLoss: image_feats must be floating point, got torch.int64'),
    ((torch.zeros(0, 4), torch.zeros(0, 4), torch.arange(0)),
     'CMPMLoss: got an empty batch (B = 0)'),
])
def test_bad_inputs_raise_clear_errors(args, message):
    loss_fn = MODELS.build(dict(type='CMPMLoss'))
    with pytest.raises(ValueError) as err:
        loss_fn(*args)
    assert str(err.value) == message


def test_negative_eps_rejected():
    with pytest.raises(ValueError, match=r'CMPMLoss: eps must be >= 0, got '
                                         r'-1\.0'):
        MODELS.build(dict(type='CMPMLoss', eps=-1.0))

"""IDLoss against hand-computed values."""
import math

import pytest
import torch

from mdrl_plugin.registry import MODELS

LOGITS = [[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]]
LABELS = [0, 2]


def log_softmax(row: list) -> list:
    log_z = math.log(sum(math.exp(v) for v in row))
    return [v - log_z for v in row]


def test_registered_with_defaults():
    loss = MODELS.build(dict(type='IDLoss'))
    assert type(loss).__name__ == 'IDLoss'
    assert loss.label_smoothing == 0.0
    assert loss.loss_weight == 1.0


def test_hand_computed_cross_entropy():
    # Row 1: log(e^2 + 1 + e^-1) - 2; row 2: log(2 e^0.5 + e^3) - 3.
    row1 = math.log(math.exp(2) + 1 + math.exp(-1)) - 2
    row2 = math.log(2 * math.exp(0.5) + math.exp(3)) - 3
    expected = (row1 + row2) / 2
    # By hand: log(8.7570) - 2 = 0.1699, log(23.3829) - 3 = 0.1521.
    assert expected == pytest.approx(0.1610, abs=1e-3)
    loss = MODELS.build(dict(type='IDLoss'))(
        torch.tensor(LOGITS, dtype=torch.float64), torch.tensor(LABELS))
    assert loss.dim() == 0
    assert loss.item() == pytest.approx(expected, rel=1e-12)


def test_hand_computed_label_smoothing_and_weight():
    smoothing, weight = 0.1, 0.5
    expected = 0.0
    for row, label in zip(LOGITS, LABELS):
        logp = log_softmax(row)
        # target = (1 - s) one_hot + s / C
        expected += -sum(((1 - smoothing) * (k == label) + smoothing / 3) * lp
                         for k, lp in enumerate(logp))
    expected = weight * expected / 2
    loss = MODELS.build(
        dict(type='IDLoss', label_smoothing=smoothing, loss_weight=weight))(
            torch.tensor(LOGITS, dtype=torch.float64), torch.tensor(LABELS))
    assert loss.item() == pytest.approx(expected, rel=1e-12)


def test_loss_weight_scales():
    logits = torch.tensor(LOGITS)
    labels = torch.tensor(LABELS)
    base = MODELS.build(dict(type='IDLoss'))(logits, labels)
    scaled = MODELS.build(dict(type='IDLoss', loss_weight=2.5))(
        logits, labels)
    torch.testing.assert_close(scaled, 2.5 * base)


def test_gradients_finite_and_nonzero():
    logits = torch.tensor(LOGITS, requires_grad=True)
    MODELS.build(dict(type='IDLoss'))(logits, torch.tensor(LABELS)).backward()
    assert torch.isfinite(logits.grad).all()
    assert logits.grad.abs().sum() > 0
    # d CE / d logits = (softmax - one_hot) / B
    p = [math.exp(v) for v in log_softmax(LOGITS[0])]
    assert logits.grad[0].tolist() == pytest.approx(
        [(p[0] - 1) / 2, p[1] / 2, p[2] / 2], rel=1e-5)


@pytest.mark.parametrize('labels, bad', [([0, 3], 3), ([-1, 1], -1),
                                         ([7, -2], 7)])
def test_label_outside_classifier_is_a_clear_error(labels, bad):
    with pytest.raises(ValueError) as err:
        MODELS.build(dict(type='IDLoss'))(
            torch.tensor(LOGITS), torch.tensor(labels))
    assert str(err.value) == (
        f'IDLoss: the classifier has 3 classes but a label of {bad} was seen '
        "(labels must lie in [0, 3)); set the model's `num_classes` to the "
        "dataset's metainfo['num_classes']")


@pytest.mark.parametrize('logits, labels, message', [
    (torch.zeros(2, 3, 1), torch.tensor([0, 1]),
     'IDLoss: logits must be a floating point tensor of shape [B, C], got '
     '(2, 3, 1) torch.float32'),
    (torch.zeros(2, 3), torch.tensor([0, 1, 2]),
     'IDLoss: labels must have shape [B] = [2], got (3,)'),
    (torch.zeros(2, 3), torch.tensor([0., 1.]),
     'IDLoss: labels must be integer identity labels, got torch.float32'),
    (torch.zeros(0, 3), torch.zeros(0, dtype=torch.long),
     'IDLoss: got an empty batch (B = 0)'),
])
def test_bad_inputs_raise_clear_errors(logits, labels, message):
    with pytest.raises(ValueError) as err:
        MODELS.build(dict(type='IDLoss'))(logits, labels)
    assert str(err.value) == message


@pytest.mark.parametrize('smoothing', [-0.1, 1.0])
def test_bad_label_smoothing_rejected(smoothing):
    with pytest.raises(ValueError) as err:
        MODELS.build(dict(type='IDLoss', label_smoothing=smoothing))
    assert str(err.value) == \
        f'IDLoss: label_smoothing must be in [0, 1), got {smoothing}'

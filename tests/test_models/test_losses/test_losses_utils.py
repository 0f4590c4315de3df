"""Helpers of the losses package without distributed."""
import math

import pytest
import torch

from mdrl_plugin.models.losses import all_gather_with_grad, gather_features
from mdrl_plugin.models.losses.utils import get_dist_info, matching_kl


def test_gather_features_is_a_no_op_without_distributed():
    feats = torch.randn(3, 4, requires_grad=True)
    labels = torch.arange(3)
    out = gather_features(feats, labels)
    assert isinstance(out, tuple) and len(out) == 2
    assert out[0] is feats and out[1] is labels
    gathered = all_gather_with_grad(feats, labels)
    assert gathered.local_slice == slice(0, 3)
    assert gathered.world_size == 1
    assert get_dist_info() == (0, 1)


def test_gather_rejects_row_mismatch_and_no_input():
    with pytest.raises(ValueError) as err:
        gather_features(torch.zeros(3, 4), torch.zeros(2))
    assert str(err.value) == (
        'gather_features: all tensors must have the same number of rows '
        '(dim 0), got shapes [(3, 4), (2,)]')
    with pytest.raises(ValueError, match='expected at least one tensor'):
        gather_features()


def test_matching_kl_hand_computed():
    logits = torch.tensor([[0.0, math.log(3.0)], [1.0, 1.0]],
                          dtype=torch.float64)
    # Row 0: p = [1/4, 3/4], q = [1, 0]; row 1: p = [1/2, 1/2], q = [0, 1].
    eps = 1e-8
    row0 = 0.25 * (math.log(0.25) - math.log(1 + eps)) + \
        0.75 * (math.log(0.75) - math.log(eps))
    row1 = 0.5 * (math.log(0.5) - math.log(eps)) + \
        0.5 * (math.log(0.5) - math.log(1 + eps))
    # By hand: row 0 = -0.3466 + 0.75 * (-0.2877 + 18.4207) = 13.2532.
    assert row0 == pytest.approx(13.2532, abs=1e-3)
    out = matching_kl(logits, torch.tensor([5, 7]), torch.tensor([5, 7]), eps)
    assert out.tolist() == pytest.approx([row0, row1], rel=1e-12)


def test_matching_kl_rows_with_shared_identity():
    logits = torch.tensor([[0.0, math.log(3.0)], [1.0, 1.0]],
                          dtype=torch.float64)
    eps = 1e-8
    # Labels [5, 5]: q = [1/2, 1/2] for both rows.
    row0 = 0.25 * (math.log(0.25) - math.log(0.5 + eps)) + \
        0.75 * (math.log(0.75) - math.log(0.5 + eps))
    row1 = 0.5 * (math.log(0.5) - math.log(0.5 + eps)) * 2
    out = matching_kl(logits, torch.tensor([5, 5]), torch.tensor([5, 5]), eps)
    assert out.tolist() == pytest.approx([row0, row1], rel=1e-12)


def test_matching_kl_query_without_match_is_an_error():
    with pytest.raises(ValueError) as err:
        matching_kl(torch.zeros(1, 2), torch.tensor([3]), torch.tensor([1, 2]),
                    1e-8)
    assert str(err.value) == (
        'matching_kl: a query identity has no matching key; the keys must '
        'include the pair of every query')

"""topk_cosine and the ranking backends on hand-computed cases."""
import numpy as np
import pytest
import torch

from mdrl_plugin.apis import build_ranker, topk_cosine

GALLERY = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [-1.0, 0.0]])
QUERIES = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-0.6, 0.8]])


def test_hand_computed_ranking():
    scores, idx = topk_cosine(QUERIES, GALLERY, 2)
    # q0 . g = [1, .6, 0, -1]; q1 . g = [0, .8, 1, 0];
    # q2 . g = [-.6, -.36+.64=.28, .8, .6]
    assert idx.tolist() == [[0, 1], [2, 1], [2, 3]]
    torch.testing.assert_close(
        scores, torch.tensor([[1.0, 0.6], [1.0, 0.8], [0.8, 0.6]]))


def test_k_is_clipped_to_the_gallery():
    scores, idx = topk_cosine(QUERIES[:1], GALLERY, 100)
    assert idx.tolist() == [[0, 1, 2, 3]]
    torch.testing.assert_close(scores, torch.tensor([[1.0, 0.6, 0.0, -1.0]]))


@pytest.mark.parametrize('max_scores', [1, 4, 5, 9, 1 << 20])
def test_chunking_does_not_change_the_result(max_scores):
    g = torch.nn.functional.normalize(torch.randn(50, 8, generator=torch.
                                                  Generator().manual_seed(0)),
                                      dim=1)
    q = torch.nn.functional.normalize(torch.randn(7, 8, generator=torch.
                                                  Generator().manual_seed(1)),
                                      dim=1)
    ref_s, ref_i = topk_cosine(q, g, 5, max_scores=1 << 30)
    s, i = topk_cosine(q, g, 5, max_scores=max_scores)
    assert torch.equal(i, ref_i)
    torch.testing.assert_close(s, ref_s)
    full = (q @ g.T).argsort(dim=1, descending=True)[:, :5]
    assert torch.equal(ref_i, full)


def test_errors():
    with pytest.raises(ValueError, match='Query features are 3-d but the '
                       'gallery features are 2-d'):
        topk_cosine(torch.zeros(1, 3), GALLERY, 1)
    with pytest.raises(ValueError, match='topk must be >= 1, got 0'):
        topk_cosine(QUERIES, GALLERY, 0)
    with pytest.raises(ValueError, match=r'needs \[T, D\] queries'):
        topk_cosine(torch.zeros(3), GALLERY, 1)
    with pytest.raises(ValueError, match="Unknown search backend 'hnsw'"):
        build_ranker('hnsw', GALLERY.numpy())


def test_torch_ranker_returns_cpu_tensors():
    ranker = build_ranker('torch', GALLERY.numpy().astype(np.float64))
    assert ranker.gallery.dtype == torch.float32
    s, i = ranker.search(QUERIES, 1)
    assert i.tolist() == [[0], [2], [2]]
    assert s.device.type == 'cpu'


def test_equal_scores_come_in_gallery_order():
    # rows 1, 3 and 4 are duplicates of one feature; row 0 is the best
    g = torch.tensor([[1.0, 0.0], [0.6, 0.8], [-1.0, 0.0], [0.6, 0.8],
                      [0.6, 0.8]])
    q = torch.tensor([[0.8, 0.6]])  # . g = [.8, .96, -.8, .96, .96]
    for max_scores in (1, 1 << 20):
        s, i = topk_cosine(q, g, 5, max_scores=max_scores)
        assert i.tolist() == [[1, 3, 4, 0, 2]]
        torch.testing.assert_close(
            s, torch.tensor([[0.96, 0.96, 0.96, 0.8, -0.8]]))
    # reversed gallery: still ascending index among the ties
    s, i = topk_cosine(q, g.flip(0), 4)
    assert i.tolist() == [[0, 1, 3, 4]]

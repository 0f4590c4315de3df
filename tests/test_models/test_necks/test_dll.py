import pytest
import torch

from mdrl_plugin.models.necks.dll import group_tokens
from mdrl_plugin.registry import MODELS


def ids_in_groups(groups, empty):
    """Token ids (stored in channel 0) of each sample's groups, as lists."""
    return [[g[~e, 0].long().tolist() for g, e in zip(gs, es)]
            for gs, es in zip(groups, empty)]


def test_fixed_grouping_of_ten_tokens_into_three():
    tokens = torch.arange(1, 11).float().view(1, 10, 1)
    groups, empty = group_tokens(tokens, None, 3, shuffle=False)
    # sizes 4, 3, 3: token r of n goes to group floor(r * P / n)
    assert ids_in_groups(groups, empty) == [[[1, 2, 3, 4], [5, 6, 7], [8, 9, 10]]]
    assert groups.shape == (1, 3, 4, 1)


def test_padding_is_never_grouped():
    tokens = torch.arange(1, 9).float().view(1, 8, 1)
    pad = torch.tensor([[False] * 5 + [True] * 3])
    groups, empty = group_tokens(tokens, pad, 2, shuffle=False)
    assert ids_in_groups(groups, empty) == [[[1, 2, 3], [4, 5]]]


def test_fewer_tokens_than_groups_leaves_groups_empty():
    tokens = torch.arange(1, 5).float().view(1, 4, 1)
    pad = torch.tensor([[False, True, True, True]])
    groups, empty = group_tokens(tokens, pad, 3, shuffle=False)
    assert ids_in_groups(groups, empty) == [[[1], [], []]]


@pytest.mark.parametrize('L,P', [(12, 4), (13, 4), (7, 3)])
def test_shuffled_groups_cover_every_token_once_and_change(L, P):
    B = 3
    tokens = torch.arange(1, L + 1).float().expand(B, L)[..., None]
    pad = torch.zeros(B, L, dtype=torch.bool)
    pad[1, L - 2:] = True  # sample 1 has two padding tokens
    torch.manual_seed(0)
    first = ids_in_groups(*group_tokens(tokens, pad, P, shuffle=True))
    second = ids_in_groups(*group_tokens(tokens, pad, P, shuffle=True))
    for sample, n in zip(first, (L, L - 2, L)):
        flat = sorted(t for g in sample for t in g)
        assert flat == list(range(1, n + 1))
        sizes = [len(g) for g in sample]
        assert max(sizes) - min(sizes) <= 1
    assert first != second
    # the same seed reproduces the permutation
    torch.manual_seed(0)
    assert ids_in_groups(*group_tokens(tokens, pad, P, shuffle=True)) == first


def build_dll(**kwargs):
    cfg = dict(type='DisorderedLocalLearning', embed_dims=16, num_groups=3,
               num_heads=2)
    cfg.update(kwargs)
    torch.manual_seed(0)
    return MODELS.build(cfg)


def test_dll_training_random_evaluation_fixed():
    dll = build_dll()
    g, tokens = torch.randn(2, 16), torch.randn(2, 10, 16)
    dll.train()
    a, b = dll(g, tokens), dll(g, tokens)
    assert a.shape == (2, 3, 16)
    assert not torch.allclose(a, b)
    dll.eval()
    torch.testing.assert_close(dll(g, tokens), dll(g, tokens))
    no_shuffle = build_dll(shuffle=False).train()
    torch.testing.assert_close(no_shuffle(g, tokens), no_shuffle(g, tokens))


def test_dll_ignores_padding_content_and_amount():
    dll = build_dll().eval()
    g, tokens = torch.randn(1, 16), torch.randn(1, 6, 16)
    padded = torch.cat([tokens, torch.randn(1, 5, 16) * 100], dim=1)
    mask = torch.tensor([[False] * 6 + [True] * 5])
    torch.testing.assert_close(dll(g, tokens), dll(g, padded, mask), atol=1e-5, rtol=1e-5)


def test_dll_gradients_reach_tokens_and_global():
    dll = build_dll().train()
    g = torch.randn(2, 16, requires_grad=True)
    tokens = torch.randn(2, 9, 16, requires_grad=True)
    out = dll(g, tokens)
    (out * torch.randn_like(out)).sum().backward()
    assert g.grad.abs().sum() > 0
    assert (tokens.grad.abs().sum(-1) > 0).all()  # every token is used


def test_dll_checks_width():
    with pytest.raises(ValueError, match='embed_dims=16.*width 8'):
        build_dll()(torch.randn(1, 8), torch.randn(1, 4, 8))

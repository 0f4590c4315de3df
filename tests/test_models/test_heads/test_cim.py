import pytest
import torch

from mdrl_plugin.registry import MODELS


def build(**kwargs):
    torch.manual_seed(0)
    cfg = dict(type='CrossModalInteraction', embed_dims=16, num_layers=2, num_heads=2)
    cfg.update(kwargs)
    return MODELS.build(cfg)


def test_cim_outputs_one_feature_per_pair_and_learns():
    cim = build()
    img = torch.randn(3, 8, 16, requires_grad=True)
    txt = torch.randn(3, 5, 16, requires_grad=True)
    out = cim(img, txt)
    assert out.shape == (3, 16)
    (out * torch.randn_like(out)).sum().backward()
    assert img.grad.abs().sum() > 0 and txt.grad.abs().sum() > 0
    assert cim.cls_token.grad is not None


def test_cim_masks_text_padding():
    cim = build().eval()
    img, txt = torch.randn(1, 8, 16), torch.randn(1, 4, 16)
    padded = torch.cat([txt, torch.randn(1, 3, 16) * 50], dim=1)
    mask = torch.tensor([[False] * 4 + [True] * 3])
    torch.testing.assert_close(cim(img, txt), cim(img, padded, mask), atol=1e-5, rtol=1e-5)


def test_cim_mixes_the_two_modalities():
    cim = build().eval()
    img, txt = torch.randn(1, 8, 16), torch.randn(1, 4, 16)
    assert not torch.allclose(cim(img, txt), cim(img, torch.randn(1, 4, 16)))
    assert not torch.allclose(cim(img, txt), cim(torch.randn(1, 8, 16), txt))


def test_cim_needs_pairs():
    with pytest.raises(ValueError, match='one caption per image'):
        build()(torch.randn(2, 8, 16), torch.randn(3, 4, 16))


def test_identity_classifier():
    clf = MODELS.build(dict(type='IdentityClassifier', in_channels=16, num_classes=7))
    assert clf(torch.randn(4, 3, 16)).shape == (4, 3, 7)

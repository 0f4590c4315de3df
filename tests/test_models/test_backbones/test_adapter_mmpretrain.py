"""BackboneAdapter over mmpretrain backbones (needs the `mmpretrain` extra)."""
import os

import pytest
import torch

if os.environ.get('CI'):  # `make test` installs the extra: never skip there
    import mmpretrain  # noqa: F401
else:
    pytest.importorskip('mmpretrain')

from mdrl_plugin.registry import MODELS  # noqa: E402

TINY_VIT = dict(embed_dims=32, num_layers=1, num_heads=2, feedforward_channels=64)


def vit_cfg(**kwargs):
    cfg = dict(type='mmpretrain.VisionTransformer', arch=TINY_VIT,
               img_size=(64, 32), patch_size=16, out_type='raw')
    cfg.update(kwargs)
    return cfg


def adapter(backbone, **kwargs):
    return MODELS.build(dict(type='BackboneAdapter', backbone=backbone,
                             probe_size=(64, 32), **kwargs))


def test_vit_raw_gives_cls_and_patch_tokens():
    enc = adapter(vit_cfg(), out_channels=16)
    assert (enc.embed_dims, enc.out_channels, enc.num_prefix_tokens) == (32, 16, 1)
    enc.eval()
    images = torch.randn(2, 3, 64, 32)
    g, tokens = enc(images)
    raw = enc.backbone(images)[-1]  # [B, 1 + 8, 32]
    torch.testing.assert_close(g, enc.proj(raw[:, 0]))
    torch.testing.assert_close(tokens, enc.proj(raw[:, 1:]))
    assert tokens.shape == (2, 8, 16)


def test_vit_featmap_without_cls_uses_the_mean():
    enc = adapter(vit_cfg(out_type='featmap', with_cls_token=False))
    g, tokens = enc(torch.randn(2, 3, 64, 32))
    assert tokens.shape == (2, 8, 32)
    torch.testing.assert_close(g, tokens.mean(1))


def test_resnet_last_stage_map():
    enc = adapter(dict(type='mmpretrain.ResNet', depth=18, out_indices=(2, 3)))
    assert enc.out_channels == 512
    g, tokens = enc(torch.randn(2, 3, 64, 32))
    assert tokens.shape == (2, 2, 512)  # the 2x1 map of stage 4
    torch.testing.assert_close(g, tokens.mean(1))


def test_swin_last_stage_map():
    enc = adapter(dict(type='mmpretrain.SwinTransformer', img_size=(64, 32),
                       arch=dict(embed_dims=16, depths=[1, 1], num_heads=[1, 2]),
                       out_indices=(1, ), window_size=4, pad_small_map=True))
    assert enc.out_channels == 32  # stage 2 doubles the width
    _, tokens = enc(torch.randn(2, 3, 64, 32))
    assert tokens.shape == (2, 8 * 4, 32)  # 64x32 / 4 / 2 = 8x4 map


def test_pooled_vit_output_is_a_clear_error():
    with pytest.raises(ValueError, match=r'mmpretrain.VisionTransformer cannot '
                       r"be read as tokens; it returned tuple\[\(1, 32\)\].*out_type='raw'"):
        adapter(vit_cfg(out_type='cls_token'))


def test_loads_an_mmpretrain_classifier_checkpoint_with_backbone_prefix(tmp_path):
    from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS
    torch.manual_seed(5)
    classifier = MMPRETRAIN_MODELS.build(dict(
        type='ImageClassifier', _scope_='mmpretrain',  # whatever the default scope
        backbone=dict(type='VisionTransformer', arch=TINY_VIT, img_size=(64, 32),
                      patch_size=16),
        head=dict(type='VisionTransformerClsHead', num_classes=3, in_channels=32)))
    path = tmp_path / 'mmpretrain_vit.pth'
    # mmpretrain's saved layout: the classifier's state dict, `backbone.` keys
    torch.save({'meta': {'epoch': 1}, 'state_dict': classifier.state_dict()}, path)
    enc = adapter(vit_cfg(init_cfg=dict(type='Pretrained', checkpoint=str(path),
                                        prefix='backbone.')))
    before = enc.backbone.patch_embed.projection.weight.clone()
    enc.init_weights()  # what the Runner calls
    expected = classifier.backbone.state_dict()
    loaded = enc.backbone.state_dict()
    assert set(loaded) == set(expected)
    for key, value in expected.items():
        assert torch.equal(loaded[key], value), key
    assert not torch.equal(before, loaded['patch_embed.projection.weight'])

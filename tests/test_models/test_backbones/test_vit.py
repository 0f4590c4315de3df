import pytest
import timm
import torch

from mdrl_plugin.registry import MODELS


def tiny_vit(**kwargs):
    cfg = dict(type='TimmVisionTransformer', arch='vit_base_patch16_224',
               img_size=(64, 32), patch_size=16, drop_path_rate=0.0,
               arch_kwargs=dict(embed_dim=32, depth=2, num_heads=2))
    cfg.update(kwargs)
    return MODELS.build(cfg)


def test_outputs_cls_and_patch_tokens():
    vit = tiny_vit()
    assert vit.num_patches == 4 * 2
    g, tokens = vit(torch.randn(3, 3, 64, 32))
    assert g.shape == (3, 32) and tokens.shape == (3, 8, 32)


def test_paper_geometry_gives_192_patches():
    vit = tiny_vit(img_size=(384, 128))
    assert vit.num_patches == 24 * 8 == 192


def test_overlapping_stride_changes_grid():
    vit = tiny_vit(stride=8)
    # (64 - 16) / 8 + 1 = 7 rows, (32 - 16) / 8 + 1 = 3 columns
    assert vit.num_patches == 21
    assert vit.vit.pos_embed.shape == (1, 22, 32)
    _, tokens = vit(torch.randn(1, 3, 64, 32))
    assert tokens.shape == (1, 21, 32)


def test_projection_to_out_channels():
    vit = tiny_vit(out_channels=16)
    g, tokens = vit(torch.randn(2, 3, 64, 32))
    assert g.shape == (2, 16) and tokens.shape == (2, 8, 16)


def test_wrong_image_size_is_a_clear_error():
    with pytest.raises(ValueError, match=r'expects images of size \(H, W\) = \(64, 32\)'):
        tiny_vit()(torch.randn(1, 3, 32, 32))


def test_pretrained_checkpoint_with_other_resolution_is_resized(tmp_path):
    torch.manual_seed(1)
    src = timm.create_model('vit_base_patch16_224', img_size=32, num_classes=0,
                            embed_dim=32, depth=2, num_heads=2)
    path = tmp_path / 'vit.pth'
    torch.save({'state_dict': src.state_dict()}, path)
    vit = tiny_vit(pretrained=str(path))
    # weights that do not depend on the grid are copied exactly
    assert torch.equal(vit.vit.patch_embed.proj.weight, src.patch_embed.proj.weight)
    assert torch.equal(vit.vit.blocks[1].mlp.fc2.weight, src.blocks[1].mlp.fc2.weight)
    assert torch.equal(vit.vit.cls_token, src.cls_token)
    # the 2x2 grid of position embeddings is resampled to the 4x2 grid
    assert vit.vit.pos_embed.shape == (1, 9, 32)
    assert torch.equal(vit.vit.pos_embed[:, 0], src.pos_embed[:, 0])
    # Runner's init_weights must not overwrite the loaded weights
    vit.init_weights()
    assert torch.equal(vit.vit.patch_embed.proj.weight, src.patch_embed.proj.weight)


def test_missing_pretrained_file_says_where(tmp_path):
    missing = str(tmp_path / 'nope.pth')
    with pytest.raises(FileNotFoundError, match='ViT pretrained weights.*nope.pth'):
        tiny_vit(pretrained=missing)


def test_cnn_encoder_flattens_feature_map():
    cnn = MODELS.build(dict(type='TimmCNNEncoder', arch='resnet18', out_channels=24))
    g, tokens = cnn(torch.randn(2, 3, 64, 32))
    # resnet18 downsamples by 32: a 2x1 map -> 2 tokens
    assert tokens.shape == (2, 2, 24) and g.shape == (2, 24)
    torch.testing.assert_close(g, tokens.mean(1))

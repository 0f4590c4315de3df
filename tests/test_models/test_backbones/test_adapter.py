"""BackboneAdapter with timm models and the plugin's own encoders (no mmpretrain)."""
import pytest
import timm
import torch
from mmengine.structures import BaseDataElement

from mdrl_plugin.models.backbones import read_tokens
from mdrl_plugin.registry import MODELS

from mdrl_test_utils import tiny_mdrl_cfg


def adapter(**kwargs):
    return MODELS.build(dict(type='BackboneAdapter', probe_size=(64, 32), **kwargs))


def test_read_tokens_of_a_feature_map():
    fmap = torch.tensor([[[[1., 2.]], [[3., 5.]]]])  # [B=1, C=2, h=1, w=2]
    g, tokens = read_tokens(fmap)
    assert torch.equal(tokens, torch.tensor([[[1., 3.], [2., 5.]]]))
    assert torch.equal(g, torch.tensor([[1.5, 4.]]))
    # channels-last maps (timm's NHWC models) give the same tokens
    g2, tokens2 = read_tokens(fmap.permute(0, 2, 3, 1), channels_last=True)
    assert torch.equal(tokens2, tokens) and torch.equal(g2, g)


def test_read_tokens_of_a_sequence_with_and_without_cls():
    seq = torch.arange(12.).reshape(1, 3, 4)
    g, tokens = read_tokens(seq, num_prefix_tokens=1)
    assert torch.equal(g, seq[:, 0]) and torch.equal(tokens, seq[:, 1:])
    g, tokens = read_tokens(seq)
    assert torch.equal(tokens, seq) and torch.equal(g, torch.tensor([[4., 5., 6., 7.]]))
    # stages: the last one is read; a (global, tokens) pair passes as it is
    g, tokens = read_tokens((torch.zeros(1, 7, 2, 2), seq), num_prefix_tokens=1)
    assert torch.equal(tokens, seq[:, 1:])
    pair = (torch.ones(1, 4), seq)
    assert read_tokens(pair)[0] is pair[0] and read_tokens(pair)[1] is seq
    assert read_tokens(torch.zeros(2, 4)) is None
    assert read_tokens((torch.zeros(2, 4), )) is None


def test_timm_cnn_by_name():
    enc = adapter(timm_model='resnet18', out_channels=24)
    assert (enc.embed_dims, enc.out_channels) == (512, 24)
    g, tokens = enc(torch.randn(2, 3, 64, 32))
    assert tokens.shape == (2, 2, 24) and g.shape == (2, 24)  # 2x1 map
    torch.testing.assert_close(g, tokens.mean(1))


def test_timm_vit_by_name_uses_cls_token():
    enc = adapter(timm_model='vit_base_patch16_224',
                  timm_kwargs=dict(img_size=(64, 32), embed_dim=32, depth=1,
                                   num_heads=2))
    assert enc.out_channels == 32 and enc.num_prefix_tokens == 1
    images = torch.randn(2, 3, 64, 32)
    g, tokens = enc(images)
    x = enc.backbone.forward_features(images)
    assert torch.equal(g, x[:, 0]) and torch.equal(tokens, x[:, 1:])
    assert tokens.shape == (2, 8, 32)


def test_timm_checkpoint_loads_with_timm_loader_and_survives_init_weights(tmp_path):
    torch.manual_seed(3)
    src = timm.create_model('resnet18', num_classes=5)
    path = tmp_path / 'resnet18.pth'
    torch.save({'state_dict': src.state_dict()}, path)
    enc = adapter(timm_model='resnet18', timm_checkpoint=str(path))
    enc.init_weights()  # what the Runner calls: must keep the loaded weights
    loaded = enc.backbone.state_dict()
    for key, value in src.state_dict().items():
        if not key.startswith('fc.'):  # the classifier is dropped (num_classes=0)
            assert torch.equal(loaded[key], value), key


def test_missing_timm_checkpoint_says_where(tmp_path):
    with pytest.raises(FileNotFoundError, match="timm 'resnet18' weights.*nope.pth"):
        adapter(timm_model='resnet18', timm_checkpoint=str(tmp_path / 'nope.pth'))


def test_plugin_encoder_passes_through():
    cfg = dict(type='TimmVisionTransformer', img_size=(64, 32), drop_path_rate=0.0,
               arch_kwargs=dict(embed_dim=32, depth=1, num_heads=2))
    enc = adapter(backbone=cfg, out_channels=16)
    assert (enc.embed_dims, enc.out_channels) == (32, 16)
    images = torch.randn(2, 3, 64, 32)
    inner_g, inner_tokens = enc.backbone(images)
    g, tokens = enc(images)
    torch.testing.assert_close(g, enc.proj(inner_g))
    torch.testing.assert_close(tokens, enc.proj(inner_tokens))


class PooledBackbone(torch.nn.Module):
    """Returns pooled vectors only: nothing to read tokens from."""

    def forward(self, images):
        return (images.mean(dim=(2, 3)), )


def test_unreadable_output_names_type_and_shapes():
    # a config's type may be a class as well as a registered name
    with pytest.raises(ValueError, match=r'PooledBackbone cannot be read as '
                       r'tokens; it returned tuple\[\(1, 3\)\] for images of '
                       r'shape \(1, 3, 64, 32\)'):
        adapter(backbone=dict(type=PooledBackbone))


def test_backbone_of_a_missing_library_says_what_to_install():
    with pytest.raises(ImportError, match="'nolib_mdrl_test.ViT' comes from the "
                       "package 'nolib_mdrl_test', which is not installed"):
        adapter(backbone=dict(type='nolib_mdrl_test.ViT'))


def test_exactly_one_source():
    with pytest.raises(ValueError, match='exactly one of `backbone`'):
        MODELS.build(dict(type='BackboneAdapter'))
    with pytest.raises(ValueError, match='timm_model` only'):
        adapter(backbone=dict(type='TimmCNNEncoder', arch='resnet18'),
                timm_kwargs=dict(drop_rate=0.1))


def test_mdrl_trains_with_an_adapted_timm_cnn(tiny_bert_dir):
    torch.manual_seed(0)
    model = MODELS.build(tiny_mdrl_cfg(tiny_bert_dir, image_encoder=dict(
        type='BackboneAdapter', timm_model='resnet18', probe_size=(32, 16),
        out_channels=32)))
    images = list(torch.randint(0, 255, (4, 3, 32, 16), dtype=torch.uint8))
    samples = [BaseDataElement(metainfo=dict(text='a man in red', gt_label=i % 2))
               for i in range(4)]
    data = model.data_preprocessor(dict(inputs=images, data_samples=samples), True)
    model.train()
    losses = model(**data, mode='loss')
    assert set(losses) == {'loss_id_global', 'loss_id_local', 'loss_id_cim',
                           'loss_match_global', 'loss_match_local'}
    sum(losses.values()).backward()
    assert model.image_encoder.backbone.conv1.weight.grad.abs().sum() > 0
    assert model.image_encoder.proj.weight.grad.abs().sum() > 0

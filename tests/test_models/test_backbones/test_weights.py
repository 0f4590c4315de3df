"""Local pretrained weights of the timm-based encoders load through timm's loader."""
import pytest
import timm
import torch
from safetensors.torch import save_file

from mdrl_plugin.registry import MODELS


def test_cnn_encoder_loads_a_wrapped_ddp_checkpoint(tmp_path):
    torch.manual_seed(2)
    src = timm.create_model('resnet18', num_classes=10)
    path = tmp_path / 'resnet18.pth'
    # a DDP-trained checkpoint: `state_dict` wrapper, `module.` prefix
    torch.save({'state_dict': {f'module.{k}': v for k, v in src.state_dict().items()}},
               path)
    cnn = MODELS.build(dict(type='TimmCNNEncoder', arch='resnet18', pretrained=str(path)))
    for key, value in cnn.cnn.state_dict().items():
        assert torch.equal(value, src.state_dict()[key]), key


def test_vit_encoder_loads_safetensors(tmp_path):
    torch.manual_seed(4)
    src = timm.create_model('vit_base_patch16_224', img_size=(64, 32), num_classes=0,
                            embed_dim=32, depth=1, num_heads=2)
    path = tmp_path / 'vit.safetensors'
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))
    vit = MODELS.build(dict(type='TimmVisionTransformer', img_size=(64, 32),
                            arch_kwargs=dict(embed_dim=32, depth=1, num_heads=2),
                            pretrained=str(path)))
    for key, value in src.state_dict().items():
        assert torch.equal(vit.vit.state_dict()[key], value), key


def test_checkpoint_of_another_model_is_refused(tmp_path):
    path = tmp_path / 'other.pth'
    torch.save({'encoder.weight': torch.zeros(2, 2)}, path)
    with pytest.raises(ValueError, match='CNN pretrained weights .*other.pth.*no key '
                       'matches the model'):
        MODELS.build(dict(type='TimmCNNEncoder', arch='resnet18', pretrained=str(path)))

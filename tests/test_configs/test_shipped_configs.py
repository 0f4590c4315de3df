"""Every shipped config loads; the paper's recipe is what the paper says; and
each composition trains and evaluates for a few iterations at a tiny size."""
import glob
import os

import pytest
import timm
import torch
from mmengine.config import Config
from safetensors.torch import save_file
from transformers import BertModel

from mdrl_test_utils import (
    REPO_ROOT,
    folder_files,
    put_in_hub_cache,
    shrink_config,
    train_few_iterations,
    write_tiny_bert,
)

pytestmark = pytest.mark.slow  # trains every composition

CONFIGS = sorted(glob.glob(os.path.join(REPO_ROOT, 'configs', '*.py')))
PAPER = {'mdrl_vit_bert_cuhk.py': (11003, 'CUHKPEDES'),
         'mdrl_vit_bert_icfg.py': (3102 - 300, 'ICFGPEDES'),  # 300 ids are val
         'mdrl_vit_bert_rstp.py': (3701, 'RSTPReid')}


def test_every_config_loads():
    assert len(CONFIGS) >= 7
    for path in CONFIGS:
        cfg = Config.fromfile(path)
        assert cfg.default_scope == 'mdrl_plugin'
        assert cfg.model.type == 'MDRL'


@pytest.mark.parametrize('name', sorted(PAPER))
def test_paper_recipe(name):
    cfg = Config.fromfile(os.path.join(REPO_ROOT, 'configs', name))
    num_classes, dataset = PAPER[name]
    assert cfg.model.num_classes == num_classes
    assert cfg.train_dataloader.dataset.type == dataset
    assert cfg.model.image_encoder.arch == 'vit_base_patch16_224'
    # hub names by default (docs/training.md, "Pretrained weights")
    assert cfg.model.image_encoder.pretrained == 'vit_base_patch16_224.orig_in21k_ft_in1k'
    assert cfg.model.text_encoder.pretrained == 'bert-base-uncased'
    assert cfg.model.data_preprocessor.tokenizer == 'bert-base-uncased'
    assert tuple(cfg.model.image_encoder.img_size) == (384, 128)
    assert cfg.model.image_encoder.patch_size == 16
    assert cfg.model.text_encoder.frozen is True
    assert cfg.model.data_preprocessor.max_length == 64
    resize = [t for t in cfg.train_dataloader.dataset.pipeline if t.type == 'Resize'][0]
    assert tuple(resize.scale) == (128, 384)  # (w, h)
    assert cfg.train_cfg.max_epochs == 150
    opt = cfg.optim_wrapper.optimizer
    assert (opt.type, opt.lr, opt.momentum, opt.weight_decay) == ('SGD', 7e-5, 0.9, 0.01)
    warmup = cfg.param_scheduler[0]
    assert warmup.type == 'LinearLR' and warmup.end == 10 and warmup.by_epoch
    assert cfg.model.image_local.num_groups == 4 and cfg.model.cross_modal.num_layers == 2
    assert cfg.model.matching_loss.type == 'CMPMLoss'


@pytest.mark.parametrize('name', [
    'mdrl_vit_bert_cuhk.py', 'mdrl_resnet50_bert_cuhk.py',
    'mdrl_vit_bert_sdm_cuhk.py', 'baseline_vit_bert_cuhk.py'])
def test_config_trains_a_few_iterations(name, tiny_bert_dir, tiny_pedes_root, tmp_path):
    cfg = Config.fromfile(os.path.join(REPO_ROOT, 'configs', name))
    shrink_config(cfg, tiny_bert_dir, tiny_pedes_root)
    train_few_iterations(cfg, tmp_path)


def test_paper_config_builds_its_model_by_hub_id(offline_hub, tmp_path):
    """The CUHK-PEDES config as shipped, its ids served by tiny stand-ins
    from a Hugging Face cache (offline, no network): only sizes change."""
    from mdrl_plugin.models import check_weights
    from mdrl_plugin.registry import MODELS
    bert = write_tiny_bert(str(tmp_path / 'bert'), seed=3)
    put_in_hub_cache(offline_hub, 'bert-base-uncased', folder_files(bert))
    torch.manual_seed(4)
    tiny = dict(embed_dim=32, depth=1, num_heads=2)
    vit = timm.create_model('vit_base_patch16_224', **tiny)  # 224x224, 1000 classes
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()},
              str(tmp_path / 'vit.safetensors'))
    put_in_hub_cache(offline_hub, 'timm/vit_base_patch16_224.orig_in21k_ft_in1k',
                     {'model.safetensors': str(tmp_path / 'vit.safetensors')})
    cfg = Config.fromfile(os.path.join(REPO_ROOT, 'configs', 'mdrl_vit_bert_cuhk.py'))
    model = cfg.model
    model.image_encoder.update(img_size=(32, 16), arch_kwargs=tiny)
    model.text_encoder.update(num_heads=2)
    for key in ('image_local', 'cross_modal'):
        model[key].update(num_heads=2)
    check_weights(cfg)  # everything cached: no error, no network
    mdrl = MODELS.build(model)
    assert torch.equal(mdrl.image_encoder.vit.blocks[0].attn.qkv.weight,
                       vit.blocks[0].attn.qkv.weight)
    assert torch.equal(mdrl.text_encoder.bert.embeddings.word_embeddings.weight,
                       BertModel.from_pretrained(bert).embeddings.word_embeddings.weight)
    assert mdrl.data_preprocessor.tokenize(['a man'])['input_ids'].tolist() == [[2, 5, 8, 3]]

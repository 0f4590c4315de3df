"""The configs that mix the plugin with mmpretrain train a few iterations and
evaluate, at a tiny size, as the other shipped configs do (needs the
`mmpretrain` extra, which `make test` installs)."""
import copy
import os

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from mdrl_test_utils import REPO_ROOT, shrink_config

if os.environ.get('CI'):  # `make test` installs the extra: never skip there
    import mmpretrain  # noqa: F401
else:
    pytest.importorskip('mmpretrain')

TINY_VIT = dict(embed_dims=32, num_layers=1, num_heads=2, feedforward_channels=64)


def write_mmpretrain_vit_checkpoint(path: str) -> dict:
    """Save an mmpretrain ImageClassifier as mmpretrain does; return its backbone weights."""
    from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS
    torch.manual_seed(7)
    classifier = MMPRETRAIN_MODELS.build(dict(
        type='ImageClassifier', _scope_='mmpretrain',  # whatever the default scope
        backbone=dict(type='VisionTransformer', arch=TINY_VIT, img_size=(32, 16),
                      patch_size=8),
        head=dict(type='VisionTransformerClsHead', num_classes=5, in_channels=32)))
    classifier.init_weights()
    torch.save({'meta': {'epoch': 3, 'mmpretrain_version': '1.2.0'},
                'state_dict': classifier.state_dict()}, path)
    return classifier.backbone.state_dict()


def test_mdrl_with_mmpretrain_vit_loads_its_checkpoint_trains_and_evaluates(
        tiny_bert_dir, tiny_pedes_root, tmp_path):
    cfg = Config.fromfile(os.path.join(REPO_ROOT, 'configs',
                                       'mdrl_mmpretrain_vit_demo.py'))
    assert cfg.model.image_encoder.backbone.type == 'mmpretrain.VisionTransformer'
    encoder = copy.deepcopy(cfg.model.image_encoder)
    shrink_config(cfg, tiny_bert_dir, tiny_pedes_root)
    ckpt = str(tmp_path / 'mmpretrain_vit.pth')
    expected = write_mmpretrain_vit_checkpoint(ckpt)
    encoder.backbone.update(
        arch=TINY_VIT, img_size=(32, 16), patch_size=8,
        init_cfg=dict(type='Pretrained', checkpoint=ckpt, prefix='backbone.'))
    encoder.update(probe_size=(32, 16), out_channels=32)
    cfg.model.image_encoder = encoder
    cfg.work_dir = str(tmp_path / 'work')
    runner = Runner.from_cfg(cfg)
    runner.model.init_weights()  # what runner.train() does first
    loaded = runner.model.image_encoder.backbone.state_dict()
    assert set(loaded) == set(expected)
    for key, value in expected.items():
        assert torch.equal(loaded[key], value), key
    runner.train()
    assert os.path.isfile(os.path.join(cfg.work_dir, 'iter_2.pth'))
    metrics = runner.val_loop.run()
    assert set(metrics) == {'R1', 'R5', 'R10', 'mAP', 'mINP'}
    assert all(0.0 <= v <= 100.0 for v in metrics.values())


@pytest.fixture
def restore_default_scope():
    """A Runner with default_scope='mmpretrain' leaves mmpretrain the current
    scope of the process, which would send the other tests' unscoped builds to
    mmpretrain's registries: put the previous scope (or the plugin's) back."""
    import time

    from mmengine.registry import DefaultScope
    before = DefaultScope.get_current_instance()
    yield
    DefaultScope.get_instance(
        f'restore-{time.time_ns()}',
        scope_name=before.scope_name if before is not None else 'mdrl_plugin')


def test_mmpretrain_classifier_with_plugin_dataset_and_sampler(
        tiny_pedes_root, tmp_path, restore_default_scope):
    cfg = Config.fromfile(os.path.join(
        REPO_ROOT, 'configs', 'mmpretrain', 'resnet18_person_id_classifier_demo.py'))
    assert cfg.default_scope == 'mmpretrain'
    assert cfg.train_dataloader.sampler.type == 'mdrl_plugin.IdentityBalancedSampler'
    num_classes = 6  # training identities of the tiny data
    cfg.model.data_preprocessor.num_classes = num_classes
    cfg.model.head.num_classes = num_classes
    for split in ('train', 'val', 'test'):
        loader = cfg[f'{split}_dataloader']
        loader.update(batch_size=4, num_workers=0, persistent_workers=False)
        loader.dataset.data_root = tiny_pedes_root
        for t in loader.dataset.pipeline:
            if t['type'] == 'Resize':
                t['scale'] = (16, 32)
    cfg.train_dataloader.sampler.update(batch_size=4, num_instances=2)
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=2, val_interval=2)
    cfg.param_scheduler = []
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=2,
                                        by_epoch=False)
    cfg.log_processor = dict(window_size=1, by_epoch=False)
    cfg.env_cfg.dist_cfg = dict(backend='gloo')
    cfg.work_dir = str(tmp_path)
    runner = Runner.from_cfg(cfg)
    batch = next(iter(runner.train_dataloader))
    labels = [int(s.gt_label) for s in batch['data_samples']]
    # identity-balanced: 2 identities x 2 images each
    assert sorted(labels.count(lb) for lb in set(labels)) == [2, 2]
    runner.train()
    assert os.path.isfile(os.path.join(tmp_path, 'iter_2.pth'))
    metrics = runner.val_loop.run()
    assert set(metrics) == {'accuracy/top1', 'accuracy/top5'}
    assert all(0.0 <= v <= 100.0 for v in metrics.values())

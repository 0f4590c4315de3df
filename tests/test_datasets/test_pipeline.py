"""The documented pipelines end to end; the Runner's dataloader building."""
import os.path as osp
from collections import OrderedDict

import cv2
import numpy as np
import pytest
import torch
from mmengine.registry import DefaultScope
from mmengine.runner import Runner
from mmengine.structures import BaseDataElement

from mdrl_plugin.datasets import UnreadableImageError
from mdrl_plugin.registry import DATASETS, MODELS
from test_datasets._pedes_data import cuhk_records, write_dataset

TRAIN_PIPELINE = [
    dict(type='LoadPersonImage'),
    dict(type='Resize', scale=(128, 384), keep_ratio=False),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackTextImageInputs'),
]
TEST_PIPELINE = [
    dict(type='LoadPersonImage'),
    dict(type='Resize', scale=(128, 384), keep_ratio=False),
    dict(type='PackTextImageInputs'),
]


def with_flip_prob(prob):
    pipeline = [dict(t) for t in TRAIN_PIPELINE]
    pipeline[2]['prob'] = prob
    return pipeline


def test_training_pipeline_output(cuhk_root):
    ds = DATASETS.build(dict(type='CUHKPEDES', data_root=cuhk_root,
                             pipeline=TRAIN_PIPELINE))
    out = ds[0]
    assert set(out) == {'inputs', 'data_samples'}
    assert out['inputs'].shape == (3, 384, 128)
    assert out['inputs'].dtype == torch.uint8
    sample = out['data_samples']
    assert isinstance(sample, BaseDataElement)
    assert sample.text == 'A man in a red shirt.'
    assert (sample.gt_label, sample.pid, sample.image_id) == (1, 5, 0)
    assert sample.ori_shape == (12, 6) and sample.img_shape == (384, 128)
    assert sample.flip in (True, False)
    assert sample.img_path == osp.join(cuhk_root, 'imgs', 'CUHK01/0001.png')


def test_flip_mirrors_the_image(cuhk_root):
    plain = DATASETS.build(dict(type='CUHKPEDES', data_root=cuhk_root,
                                pipeline=with_flip_prob(0.0)))[3]
    flipped = DATASETS.build(dict(type='CUHKPEDES', data_root=cuhk_root,
                                  pipeline=with_flip_prob(1.0)))[3]
    assert plain['data_samples'].flip is False
    assert flipped['data_samples'].flip is True
    assert torch.equal(flipped['inputs'], plain['inputs'].flip(-1))
    # the resize matches cv2's bilinear resize of the file
    img = cv2.imread(plain['data_samples'].img_path)
    expected = cv2.resize(img, (128, 384), interpolation=cv2.INTER_LINEAR)
    assert torch.equal(plain['inputs'],
                       torch.from_numpy(expected).permute(2, 0, 1))


def test_evaluation_pipeline_output(cuhk_root):
    ds = DATASETS.build(dict(type='CUHKPEDES', data_root=cuhk_root,
                             split='test', pipeline=TEST_PIPELINE))
    out = ds[0]
    sample = out['data_samples']
    assert out['inputs'].shape == (3, 384, 128)
    assert sample.texts == ['A red dress.', 'A woman.']
    assert (sample.pid, sample.image_id) == (30, 0)
    assert 'flip' not in sample and 'gt_label' not in sample


def test_corrupt_image_in_dataset_is_named(tmp_path):
    root = write_dataset(str(tmp_path / 'CUHK-PEDES'), 'reid_raw.json',
                         cuhk_records())
    bad = osp.join(root, 'imgs', 'CUHK01', '0002.png')
    with open(bad, 'wb') as f:
        f.write(b'\x89PNG broken')
    ds = DATASETS.build(dict(type='CUHKPEDES', data_root=root,
                             pipeline=TRAIN_PIPELINE))
    assert ds[0]['inputs'].shape == (3, 384, 128)
    with pytest.raises(UnreadableImageError, match=f"'{bad}'"):
        ds[2]


def dataloader_cfgs(root):
    train = dict(
        batch_size=4, num_workers=0,
        sampler=dict(type='IdentityBalancedSampler', batch_size=4,
                     num_instances=2),
        dataset=dict(type='CUHKPEDES', data_root=root,
                     pipeline=TRAIN_PIPELINE))
    test = dict(
        batch_size=2, num_workers=0,
        sampler=dict(type='DefaultSampler', shuffle=False),
        dataset=dict(type='CUHKPEDES', data_root=root, split='test',
                     pipeline=TEST_PIPELINE))
    return train, test


def test_runner_builds_dataloaders_with_default_scope(cuhk_root):
    train_cfg, test_cfg = dataloader_cfgs(cuhk_root)
    with DefaultScope.overwrite_default_scope('mdrl_plugin'):
        train_loader = Runner.build_dataloader(train_cfg, seed=0)
        test_loader = Runner.build_dataloader(test_cfg, seed=0)
    assert len(train_loader) == 2  # 4 chunks of K=2, P=2
    batch = next(iter(train_loader))
    # mmengine's default pseudo_collate: lists, stacked by the preprocessor
    assert isinstance(batch['inputs'], list) and len(batch['inputs']) == 4
    assert all(t.shape == (3, 384, 128) for t in batch['inputs'])
    labels = [s.gt_label for s in batch['data_samples']]
    assert labels[0] == labels[1] and labels[2] == labels[3]
    assert labels[0] != labels[2]
    batches = list(test_loader)
    assert [len(b['inputs']) for b in batches] == [2, 1]
    assert [s.pid for b in batches for s in b['data_samples']] == [30, 30, 31]


def test_scoped_names_without_default_scope(cuhk_root, monkeypatch):
    """Other projects' configs: ``mdrl_plugin.<Name>``, no default scope.

    The pipeline's bare names still resolve because the dataset builds its
    transforms with the plugin's registry.
    """
    monkeypatch.setattr(DefaultScope, '_instance_dict', OrderedDict())
    train_cfg, _ = dataloader_cfgs(cuhk_root)
    train_cfg['dataset']['type'] = 'mdrl_plugin.CUHKPEDES'
    train_cfg['sampler']['type'] = 'mdrl_plugin.IdentityBalancedSampler'
    train_cfg['collate_fn'] = dict(type='pseudo_collate')
    assert DefaultScope.get_current_instance() is None
    loader = Runner.build_dataloader(train_cfg, seed=0)
    assert len(next(iter(loader))['inputs']) == 4


def test_batch_feeds_the_model_data_preprocessor(tmp_path, tiny_bert_dir):
    """BGR loading + ``bgr_to_rgb=True`` gives RGB-normalised images."""
    recs = cuhk_records()[5:8]  # test split
    root = write_dataset(str(tmp_path / 'CUHK-PEDES'), 'reid_raw.json', recs)
    uniform = np.zeros((20, 10, 3), np.uint8)
    uniform[...] = (10, 20, 30)  # B, G, R
    cv2.imwrite(osp.join(root, 'imgs', 'test', '0006.png'), uniform)
    _, test_cfg = dataloader_cfgs(root)
    with DefaultScope.overwrite_default_scope('mdrl_plugin'):
        loader = Runner.build_dataloader(test_cfg, seed=0)
    pre = MODELS.build(dict(type='TextImageDataPreprocessor',
                            tokenizer=tiny_bert_dir))
    out = pre(next(iter(loader)))
    images = out['inputs']['images']
    assert images.shape == (2, 3, 384, 128)
    mean, std = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
    for c, value in enumerate((30, 20, 10)):  # R, G, B
        torch.testing.assert_close(
            images[0, c], torch.full((384, 128), (value - mean[c]) / std[c]))
    # 2 + 1 captions of the two images become the text queries
    assert out['inputs']['input_ids'].shape[0] == 3

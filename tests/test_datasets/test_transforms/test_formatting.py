import numpy as np
import pytest
import torch
from mmengine.structures import BaseDataElement

from mdrl_plugin.registry import TRANSFORMS


def test_pack_training_entry():
    img = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    pack = TRANSFORMS.build(dict(type='PackTextImageInputs'))
    out = pack(dict(img=img, text='a man', gt_label=np.int64(4), pid=17,
                    image_id=3, img_path='/x/a.png', ori_shape=(2, 3),
                    img_shape=(2, 3), flip=False, flip_direction=None,
                    sample_idx=9))
    assert set(out) == {'inputs', 'data_samples'}
    inputs = out['inputs']
    assert inputs.dtype == torch.uint8 and inputs.shape == (3, 2, 3)
    assert inputs.is_contiguous()
    assert torch.equal(inputs, torch.from_numpy(img).permute(2, 0, 1))
    sample = out['data_samples']
    assert isinstance(sample, BaseDataElement)
    assert sample.text == 'a man'
    assert sample.gt_label == 4 and type(sample.gt_label) is int
    assert (sample.pid, sample.image_id) == (17, 3)
    assert sample.flip is False and sample.img_shape == (2, 3)
    assert set(sample.metainfo_keys()) == {
        'text', 'gt_label', 'pid', 'image_id', 'img_path', 'ori_shape',
        'img_shape', 'flip'}
    assert 'texts' not in sample


def test_pack_eval_entry_and_meta_keys():
    img = np.zeros((4, 2, 3), np.uint8)
    out = TRANSFORMS.build(dict(type='PackTextImageInputs'))(
        dict(img=img, texts=('one', 'two'), pid=5, image_id=0))
    sample = out['data_samples']
    assert sample.texts == ['one', 'two'] and sample.pid == 5
    assert 'text' not in sample and 'gt_label' not in sample
    custom = TRANSFORMS.build(dict(type='PackTextImageInputs',
                                   meta_keys=('pid', 'sample_idx')))
    s2 = custom(dict(img=img, texts=['x'], pid=5, sample_idx=7))
    assert set(s2['data_samples'].metainfo_keys()) == {'pid', 'sample_idx'}


def test_pack_grayscale_and_errors():
    out = TRANSFORMS.build(dict(type='PackTextImageInputs'))(
        dict(img=np.ones((4, 2), np.uint8), text='x'))
    assert out['inputs'].shape == (1, 4, 2)
    pack = TRANSFORMS.build(dict(type='PackTextImageInputs'))
    with pytest.raises(KeyError, match="needs the key 'img'"):
        pack(dict(text='x'))
    with pytest.raises(TypeError, match=r"PackTextImageInputs: 'img' must be "
                       r'an H x W or H x W x C numpy array, got ndarray of '
                       r"shape \(1, 2, 2, 3\) \(image 'a.png'\)"):
        pack(dict(img=np.ones((1, 2, 2, 3), np.uint8), img_path='a.png'))
    with pytest.raises(TypeError, match="'texts' must be a list of str"):
        pack(dict(img=np.ones((2, 2, 3), np.uint8), texts='one caption'))
    with pytest.raises(TypeError, match="'text' must be a str, got list"):
        pack(dict(img=np.ones((2, 2, 3), np.uint8), text=['x']))

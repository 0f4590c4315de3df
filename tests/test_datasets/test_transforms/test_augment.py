"""RandomCropPad and RandomErasing: exact pixels, bounds, seeding, errors."""
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config

from mdrl_plugin.datasets.transforms import RandomCropPad, RandomErasing
from mdrl_plugin.registry import DATASETS, MODELS, TRANSFORMS

from mdrl_test_utils import REPO_ROOT


def hand_image(h=5, w=4, c=3, dtype=np.uint8):
    """Values 10, 11, ... (mod 256): distinct on small images, so that every
    shift is recognisable."""
    return ((np.arange(h * w * c) + 10) % 256).reshape(h, w, c).astype(dtype)


def offsets_of(out, padded, h, w):
    """All (top, left) where ``out`` is the window of ``padded``."""
    return [(top, left) for top in range(padded.shape[0] - h + 1)
            for left in range(padded.shape[1] - w + 1)
            if np.array_equal(padded[top:top + h, left:left + w], out)]


def run(transform, img, seed=None, **extra):
    if seed is not None:
        np.random.seed(seed)
    return transform(dict(img=img.copy(), **extra))['img']


# ------------------------------------------------------------ RandomCropPad
def test_crop_pad_builds_through_registry():
    t = TRANSFORMS.build(dict(type='RandomCropPad', padding=(2, 1),
                              pad_mode='edge', prob=0.5))
    assert isinstance(t, RandomCropPad)
    assert repr(t) == ("RandomCropPad(padding=(2, 1), prob=0.5, "
                       "pad_mode='edge', pad_val=0.0)")


def test_crop_is_a_shifted_window_of_the_padded_image():
    img = hand_image()  # 5 x 4
    t = TRANSFORMS.build(dict(type='RandomCropPad', padding=(2, 1),
                              pad_val=(7, 8, 9)))
    # the padded image written out by hand: 9 x 6, border (7, 8, 9)
    padded = np.empty((9, 6, 3), np.uint8)
    padded[:] = (7, 8, 9)
    padded[2:7, 1:5] = img
    np.random.seed(0)
    seen = set()
    for _ in range(300):
        out = t(dict(img=img.copy()))['img']
        assert out.shape == (5, 4, 3) and out.dtype == np.uint8
        found = offsets_of(out, padded, 5, 4)
        assert len(found) == 1  # exactly one window matches
        seen.add(found[0])
    # every one of the (2*2+1) x (2*1+1) offsets is drawn
    assert seen == {(top, left) for top in range(5) for left in range(3)}


def test_crop_exact_pixels_of_one_shift():
    # 2-D image [[10 11 12] [13 14 15] [16 17 18]]
    img = hand_image(3, 3, 1)[..., 0]
    t = RandomCropPad(padding=1, pad_val=0)
    np.random.seed(0)
    outs = {}
    for _ in range(200):
        out = t(dict(img=img.copy()))['img']
        outs[tuple(out.ravel())] = out
    assert len(outs) == 9  # the 3 x 3 shifts, each drawn
    assert (10, 11, 12, 13, 14, 15, 16, 17, 18) in outs  # no shift
    # crop at the padded image's corner: shifted down and right by one
    np.testing.assert_array_equal(
        outs[(0, 0, 0, 0, 10, 11, 0, 13, 14)],
        np.array([[0, 0, 0], [0, 10, 11], [0, 13, 14]], np.uint8))
    assert (14, 15, 0, 17, 18, 0, 0, 0, 0) in outs  # up and left


def test_crop_scalar_pad_val_fills_every_channel():
    # cv2 alone would read a scalar border value as (7, 0, 0)
    img = hand_image(4, 4)
    t = RandomCropPad(padding=4, pad_val=7)
    np.random.seed(0)
    filled = 0
    for _ in range(10):
        out = run(t, img)
        border = ~np.isin(out, img).all(axis=-1)
        assert (out[border] == 7).all()
        filled += border.sum()
    assert filled > 0


@pytest.mark.parametrize('mode,np_mode', [('edge', 'edge'),
                                          ('reflect', 'reflect'),
                                          ('symmetric', 'symmetric')])
def test_crop_pad_modes_match_numpy_pad(mode, np_mode):
    img = hand_image(6, 5)
    t = RandomCropPad(padding=(2, 3), pad_mode=mode)
    padded = np.pad(img, ((2, 2), (3, 3), (0, 0)), mode=np_mode)
    np.random.seed(1)
    for _ in range(20):
        out = t(dict(img=img.copy()))['img']
        assert len(offsets_of(out, padded, 6, 5)) >= 1


def test_crop_keeps_float_images_and_img_shape():
    img = hand_image(8, 4, dtype=np.float32) / 3
    out = RandomCropPad(padding=2, pad_val=0.5)(
        dict(img=img.copy(), img_shape=(8, 4)))
    assert out['img'].dtype == np.float32 and out['img'].shape == (8, 4, 3)
    assert out['img_shape'] == (8, 4)
    assert set(np.unique(out['img'])) <= set(np.unique(img)) | {0.5}


def test_crop_prob_0_is_the_identity_and_draws_nothing():
    img = hand_image()
    t = RandomCropPad(padding=3, prob=0.0)
    np.random.seed(5)
    before = np.random.get_state()[1].copy()
    results = dict(img=img)
    out = t(results)
    assert out is results and out['img'] is img
    np.testing.assert_array_equal(np.random.get_state()[1], before)


def test_crop_prob_applies_about_that_often():
    img = hand_image()
    t = RandomCropPad(padding=1, prob=0.25)
    np.random.seed(0)
    changed = sum(not np.array_equal(run(t, img), img) for _ in range(400))
    # applied with p 0.25, and then 8 of 9 offsets move the image: 0.22
    assert 60 <= changed <= 120


def test_crop_seeded_determinism():
    img = hand_image(16, 8)
    t = RandomCropPad(padding=4, prob=0.5, pad_mode='reflect')

    def draws(seed):
        np.random.seed(seed)
        return [t(dict(img=img.copy()))['img'] for _ in range(10)]

    a, b, c = draws(0), draws(0), draws(1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


@pytest.mark.parametrize('kwargs,message', [
    (dict(padding=-1), 'RandomCropPad: padding must be an int >= 0 or a pair '
     '(pad_h, pad_w) of ints >= 0, got -1.'),
    (dict(padding=(1, 2, 3)), 'padding must be an int >= 0 or a pair'),
    (dict(padding=1.5), 'got 1.5.'),
    (dict(padding=True), 'got True.'),
    (dict(padding='10'), "got '10'."),
    (dict(prob=1.5), 'RandomCropPad: prob must be a number in [0, 1], got '
     '1.5.'),
    (dict(prob='0.5'), "prob must be a number in [0, 1], got '0.5'."),
    (dict(pad_mode='wrap'), "RandomCropPad: pad_mode must be one of "
     "('constant', 'edge', 'reflect', 'symmetric'), got 'wrap'."),
    (dict(pad_val=300), 'RandomCropPad: pad_val must be a number in [0, 255] '
     'or a sequence of such numbers (one per channel), got 300.'),
    (dict(pad_val=()), 'pad_val must be a number in [0, 255]'),
    (dict(pad_val='mean'), "got 'mean'."),
])
def test_crop_bad_arguments(kwargs, message):
    with pytest.raises(ValueError) as info:
        TRANSFORMS.build(dict(type='RandomCropPad', **kwargs))
    assert message in str(info.value)


def test_crop_bad_input_is_named():
    t = RandomCropPad(padding=1, pad_val=(1, 2))
    with pytest.raises(ValueError) as info:
        t(dict(img=hand_image(), img_path='imgs/a.png'))
    assert str(info.value) == (
        "RandomCropPad: pad_val has 2 values but image 'imgs/a.png' has 3 "
        'channel(s) (shape (5, 4, 3)).')
    with pytest.raises(KeyError, match="RandomCropPad needs the key 'img'"):
        RandomCropPad()(dict(img_path='a.png'))


# ------------------------------------------------------------ RandomErasing
def test_erasing_builds_through_registry():
    t = TRANSFORMS.build(dict(type='RandomErasing'))
    assert isinstance(t, RandomErasing)
    assert repr(t) == ("RandomErasing(prob=0.5, area_ratio=(0.02, 0.4), "
                       "aspect_ratio=(0.3, 3.33), fill='random', "
                       'max_attempts=10)')


def erased_box(out, fill):
    """(top, left, h, w) of the pixels equal to ``fill``; checks that they
    form one full rectangle."""
    mask = np.all(out == np.asarray(fill, out.dtype), axis=-1)
    rows, cols = np.nonzero(mask)
    if not len(rows):
        return None
    top, left = rows.min(), cols.min()
    h, w = rows.max() - top + 1, cols.max() - left + 1
    assert mask.sum() == h * w  # a full rectangle, nothing else
    return top, left, h, w


def test_erased_rectangles_stay_within_the_bounds():
    # no pixel of the image is 0, so the erased ones are exactly the 0s
    img = np.random.default_rng(0).integers(1, 256, (64, 32, 3), np.uint8)
    t = RandomErasing(prob=1.0, fill=0)
    np.random.seed(0)
    areas, aspects = [], []
    for _ in range(300):
        out = run(t, img)
        assert out.shape == img.shape and out.dtype == np.uint8
        box = erased_box(out, (0, 0, 0))
        assert box is not None  # a 64 x 32 image always finds a rectangle
        top, left, h, w = box
        assert 0.02 * 64 * 32 <= h * w <= 0.4 * 64 * 32
        assert 0.3 <= h / w <= 3.33
        # outside the rectangle the image is untouched
        keep = np.ones((64, 32), bool)
        keep[top:top + h, left:left + w] = False
        np.testing.assert_array_equal(out[keep], img[keep])
        areas.append(h * w / (64 * 32))
        aspects.append(h / w)
    # the draws spread over the ranges: small and large, tall and wide
    assert min(areas) < 0.06 and max(areas) > 0.35
    assert min(aspects) < 0.5 and max(aspects) > 2.0


def test_erasing_with_the_mean_is_zero_after_normalisation(tiny_bert_dir):
    img = np.random.default_rng(1).integers(0, 256, (32, 16, 3), np.uint8)
    # the preprocessor's RGB mean, in the BGR order of LoadPersonImage
    t = RandomErasing(prob=1.0, fill=(103.53, 116.28, 123.675))
    np.random.seed(0)
    out = run(t, img)
    box = erased_box(out, (104, 116, 124))
    assert box is not None
    top, left, h, w = box
    pre = MODELS.build(dict(type='TextImageDataPreprocessor',
                            tokenizer=tiny_bert_dir))  # mean/std of the demo
    packed = TRANSFORMS.build(dict(type='PackTextImageInputs'))(
        dict(img=out))['inputs']
    norm = pre.preprocess_images([packed])[0]
    region = norm[:, top:top + h, left:left + w]
    assert region.abs().max().item() < 0.01
    assert norm.abs().max().item() > 1  # the rest is the image


def test_random_fill_is_uint8_noise_in_the_rectangle():
    img = np.full((40, 20, 3), 128, np.uint8)
    t = RandomErasing(prob=1.0)
    np.random.seed(3)
    out = run(t, img)
    changed = np.any(out != img, axis=-1)
    rows, cols = np.nonzero(changed)
    top, left = rows.min(), cols.min()
    h, w = rows.max() - top + 1, cols.max() - left + 1
    assert 0.02 * 800 <= h * w <= 0.4 * 800 + 1e-9
    patch = out[top:top + h, left:left + w].astype(int)
    assert patch.min() < 40 and patch.max() > 215  # spans [0, 255]
    assert len(np.unique(patch)) > 100  # per pixel and channel


def test_erasing_prob_0_is_the_identity_and_draws_nothing():
    img = hand_image(20, 10)
    t = RandomErasing(prob=0.0)
    np.random.seed(7)
    before = np.random.get_state()[1].copy()
    results = dict(img=img)
    assert t(results) is results and results['img'] is img
    np.testing.assert_array_equal(np.random.get_state()[1], before)


def test_erasing_does_not_write_into_the_input_array():
    img = hand_image(20, 10)
    copy = img.copy()
    out = RandomErasing(prob=1.0, fill=0)(dict(img=img))['img']
    np.testing.assert_array_equal(img, copy)
    assert not np.array_equal(out, img)


def test_erasing_seeded_determinism():
    img = np.random.default_rng(0).integers(0, 256, (48, 24, 3), np.uint8)
    t = RandomErasing(prob=0.5)

    def draws(seed):
        np.random.seed(seed)
        return [run(t, img) for _ in range(10)]

    a, b, c = draws(0), draws(0), draws(1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_erasing_gives_up_when_no_rectangle_fits():
    img = hand_image(10, 10)
    # 90 % of the area at height/width >= 3 needs a side of 16 > 10
    t = RandomErasing(prob=1.0, area_ratio=(0.9, 1.0),
                      aspect_ratio=(3.0, 3.33), fill=0, max_attempts=5)
    np.random.seed(0)
    results = dict(img=img)
    assert t(results)['img'] is img


def test_erasing_grayscale_and_float_images():
    gray = np.full((30, 12), 200, np.uint8)
    out = run(RandomErasing(prob=1.0, fill=3), gray, seed=0)
    assert out.shape == (30, 12) and out.dtype == np.uint8
    assert (out == 3).sum() >= 0.02 * 360
    as_float = np.full((30, 12, 3), 0.5, np.float32)
    out = run(RandomErasing(prob=1.0, fill=(10.5, 20, 30)), as_float, seed=0)
    assert out.dtype == np.float32
    erased = np.all(out == np.float32([10.5, 20, 30]), axis=-1)
    assert erased.sum() >= 0.02 * 360  # float images keep the fill as given


@pytest.mark.parametrize('kwargs,message', [
    (dict(prob=-0.1), 'RandomErasing: prob must be a number in [0, 1], got '
     '-0.1.'),
    (dict(area_ratio=(0, 0.4)), 'RandomErasing: area_ratio must be a pair '
     '(min, max) with 0 < min <= max <= 1, got (0, 0.4).'),
    (dict(area_ratio=(0.5, 0.2)), 'area_ratio must be a pair'),
    (dict(area_ratio=(0.1, 1.5)), 'area_ratio must be a pair'),
    (dict(area_ratio=0.3), 'got 0.3.'),
    (dict(area_ratio='ab'), "got 'ab'."),
    (dict(aspect_ratio=(0, 3)), 'RandomErasing: aspect_ratio must be a pair '
     '(min, max) with 0 < min <= max, got (0, 3).'),
    (dict(aspect_ratio=(3.0, 0.3)), 'aspect_ratio must be a pair'),
    (dict(fill='mean'), "RandomErasing: fill must be 'random', a number in "
     "[0, 255] or a sequence of such numbers (one per channel), got 'mean'."),
    (dict(fill=256), "fill must be 'random', a number in [0, 255]"),
    (dict(fill=(1, -2, 3)), 'got (1, -2, 3).'),
    (dict(max_attempts=0), 'RandomErasing: max_attempts must be an int >= 1, '
     'got 0.'),
    (dict(max_attempts=2.0), 'max_attempts must be an int >= 1, got 2.0.'),
])
def test_erasing_bad_arguments(kwargs, message):
    with pytest.raises(ValueError) as info:
        TRANSFORMS.build(dict(type='RandomErasing', **kwargs))
    assert message in str(info.value)


def test_erasing_fill_channels_must_match_the_image():
    t = RandomErasing(prob=1.0, fill=(1, 2, 3))
    with pytest.raises(ValueError) as info:
        t(dict(img=np.zeros((8, 4), np.uint8), img_path='imgs/g.png'))
    assert str(info.value) == (
        "RandomErasing: fill has 3 values but image 'imgs/g.png' has no "
        'channel axis, so 1 channel(s) (shape (8, 4)).')
    with pytest.raises(TypeError, match="'img' must be an H x W or H x W x C"):
        t(dict(img=torch.zeros(3, 8, 4)))


# ---------------------------------------------- in the demo's train pipeline
def demo_train_pipeline(crop_prob=1.0, erase_prob=0.5):
    """configs/mdrl_demo.py's train pipeline with both augmentations after
    the flip (as docs/training.md shows)."""
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs', 'mdrl_demo.py'))
    pipeline = [dict(t) for t in cfg.train_pipeline]
    flip = [t['type'] for t in pipeline].index('RandomFlip')
    pipeline[flip + 1:flip + 1] = [
        dict(type='RandomCropPad', padding=10, prob=crop_prob),
        dict(type='RandomErasing', prob=erase_prob,
             fill=(103.53, 116.28, 123.675)),
    ]
    return pipeline


def test_demo_pipeline_with_augmentation(cuhk_root):
    pipeline = demo_train_pipeline()
    assert [t['type'] for t in pipeline] == [
        'LoadPersonImage', 'Resize', 'RandomFlip', 'RandomCropPad',
        'RandomErasing', 'PackTextImageInputs']
    ds = DATASETS.build(dict(type='CUHKPEDES', data_root=cuhk_root,
                             pipeline=pipeline))

    def epoch(seed):
        np.random.seed(seed)
        return [ds[i] for i in range(len(ds))]

    a, b, c = epoch(0), epoch(0), epoch(1)
    for out in a:
        assert out['inputs'].shape == (3, 192, 64)
        assert out['inputs'].dtype == torch.uint8
        assert out['data_samples'].img_shape == (192, 64)
    assert all(torch.equal(x['inputs'], y['inputs']) for x, y in zip(a, b))
    assert not all(torch.equal(x['inputs'], y['inputs'])
                   for x, y in zip(a, c))


def test_demo_pipeline_at_prob_0_equals_the_shipped_one(cuhk_root):
    """At prob 0 the two transforms draw nothing: same images and flips."""
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs', 'mdrl_demo.py'))
    shipped = DATASETS.build(dict(type='CUHKPEDES', data_root=cuhk_root,
                                  pipeline=cfg.train_pipeline))
    off = DATASETS.build(dict(type='CUHKPEDES', data_root=cuhk_root,
                              pipeline=demo_train_pipeline(0.0, 0.0)))
    np.random.seed(0)
    a = [shipped[i] for i in range(len(shipped))]
    np.random.seed(0)
    b = [off[i] for i in range(len(off))]
    assert len(a) == len(b) >= 3
    for x, y in zip(a, b):
        assert torch.equal(x['inputs'], y['inputs'])
        assert x['data_samples'].flip == y['data_samples'].flip

"""mdrl_plugin.datasets.synthetic.writer: the CUHK-PEDES layout, exactly
reproducible."""
import hashlib
import json
import os
import os.path as osp
import re

import cv2
import numpy as np
import pytest

from mdrl_plugin.datasets.synthetic import default_splits, generate, make_contact_sheet, tokenize
from mdrl_plugin.registry import DATASETS

from .conftest import TINY
from mdrl_test_utils import tree_bytes


def _read_rgb(path: str) -> np.ndarray:
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    assert img is not None, path
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def test_layout_is_the_cuhk_pedes_release(tiny):
    out, _, records = tiny
    assert sorted(os.listdir(out)) == [
        'imgs', 'labels_test_query.json', 'labels_train_query.json',
        'labels_val_query.json', 'reid_raw.json']
    for split in ('train', 'val', 'test'):  # the search labels of a split
        with open(osp.join(out, f'labels_{split}_query.json')) as f:
            assert json.load(f) == {
                r['file_path'][len(split) + 7:]: r['id'] for r in records
                if r['split'] == split}
    assert sorted(os.listdir(osp.join(
        out, 'imgs'))) == ['test_query', 'train_query', 'val_query']
    assert isinstance(records, list) and len(records) == 12 * 2
    files_on_disk = sorted(
        osp.relpath(osp.join(d, f), osp.join(out, 'imgs'))
        for d, _, fs in os.walk(osp.join(out, 'imgs')) for f in fs)
    assert files_on_disk == sorted(r['file_path'] for r in records)


def test_record_schema(tiny):
    out, _, records = tiny
    for i, r in enumerate(records):
        assert list(r) == [
            'split', 'captions', 'file_path', 'processed_tokens', 'id'
        ], i
        assert r['split'] in ('train', 'val', 'test')
        assert type(r['id']) is int and 1 <= r['id'] <= 12
        # relative to imgs/, forward slashes, <split>_query/p<id>_s<n>.jpg
        assert re.fullmatch(r'(train|val|test)_query/p\d{5}_s\d{5}\.jpg',
                            r['file_path']), r['file_path']
        assert r['file_path'].startswith(r['split'] + '_query/')
        assert r['file_path'].split('/')[1][1:6] == f"{r['id']:05d}"
        assert isinstance(r['captions'], list) and len(r['captions']) == 2
        assert all(isinstance(c, str) and c for c in r['captions'])
        assert r['captions'][0] != r['captions'][1]
        assert r['processed_tokens'] == [tokenize(c) for c in r['captions']]
        path = osp.join(out, 'imgs', r['file_path'])
        h, w = _read_rgb(path).shape[:2]
        assert 64 <= w <= 96 and 160 <= h <= 240, (path, w, h)
    # one record per image, sample numbers 1..24 in order
    assert [int(r['file_path'][-9:-4]) for r in records] == list(range(1, 25))


def test_splits_are_identity_disjoint_and_sized(tiny):
    _, result, records = tiny
    ids = {s: set() for s in ('train', 'val', 'test')}
    for r in records:
        ids[r['split']].add(r['id'])
    # numbered train first, then val, then test
    assert ids == {'train': set(range(1, 9)), 'val': {9, 10}, 'test': {11, 12}}
    assert result['splits'] == {
        'train': dict(ids=8, images=16, captions=32),
        'val': dict(ids=2, images=4, captions=8),
        'test': dict(ids=2, images=4, captions=8)
    }
    assert [i.pid for i in result['identities']] == list(range(1, 13))


def test_images_vary_within_an_identity(tiny):
    out, _, records = tiny
    a, b = [
        _read_rgb(osp.join(out, 'imgs', r['file_path'])) for r in records
        if r['id'] == 1
    ]
    h, w = min(a.shape[0], b.shape[0]), min(a.shape[1], b.shape[1])
    assert a.shape != b.shape or np.abs(a[:h, :w].astype(int) -
                                        b[:h, :w].astype(int)).mean() > 10


# --------------------------------------------------------------------------
# reproducibility
# --------------------------------------------------------------------------
def _digest(root: str) -> str:
    """Of imgs/ and reid_raw.json (the search labels files came later)."""
    h = hashlib.sha256()
    for rel, data in sorted(tree_bytes(root).items()):
        if not rel.startswith('labels_'):
            h.update(rel.encode() + b'\0' + data)
    return h.hexdigest()


def test_same_seed_is_byte_identical_and_other_seed_differs(tiny, tmp_path):
    out, _, _ = tiny
    again = str(tmp_path / 'again')
    generate(again, **TINY)
    assert tree_bytes(again) == tree_bytes(out)
    other = str(tmp_path / 'other')
    generate(other, **dict(TINY, seed=1))
    a, b = tree_bytes(out), tree_bytes(other)
    assert sorted(a) == sorted(b)  # same layout
    # every picture and caption differs; the file names and ids (so the
    # search labels files) do not depend on the seed
    assert sorted(k for k in a if a[k] == b[k]) == [
        f'labels_{split}_query.json' for split in ('test', 'train', 'val')]


def test_a_small_set_is_the_one_of_the_stored_digest(tmp_path):
    """Pins the generator's output: any change to the attributes, captions,
    pictures or random draws changes these digests. They were taken from
    tools/make_demo_data.py before the generator moved into the package
    (numpy 2.4.6, opencv-python 5.0.0.93 of requirements/pinned.txt; the
    JPEG bytes may differ with another OpenCV build, the JSON does not)."""
    out = str(tmp_path / 'small')
    generate(out, num_ids=6, images_per_id=2, seed=3, splits=[4, 1, 1])
    with open(osp.join(out, 'reid_raw.json'), 'rb') as f:
        assert hashlib.sha256(f.read()).hexdigest() == (
            '27193a17f631b8b0676d3a4ed8577c0de1ff09350cfa1e17a6e858d5ba8ceac7')
    assert _digest(out) == (
        'a64a6c68b87487e56c62a39a239f42d44553d9047b920b955b7fe63b78bde5ac')
    with open(osp.join(out, 'labels_test_query.json'), 'rb') as f:
        assert f.read() == b'{\n"p00006_s00011.jpg": 6,\n"p00006_s00012.jpg": 6\n}'


# --------------------------------------------------------------------------
# arguments
# --------------------------------------------------------------------------
def test_default_splits_follow_num_ids(tmp_path):
    assert default_splits(300) == [200, 50, 50]
    result = generate(str(tmp_path / 'd'), num_ids=12, images_per_id=1)
    assert [result['splits'][s]['ids'] for s in ('train', 'val', 'test')] \
        == [8, 2, 2]


@pytest.mark.parametrize('kwargs, message', [
    (dict(num_ids=10, splits=[5, 2, 2]),
     '--splits 5,2,2 sum to 9, expected --num-ids 10'),
    (dict(splits=[200, -1, 101]), '--splits must be three non-negative '
     'integers TRAIN,VAL,TEST, got [200, -1, 101]'),
    (dict(num_ids=3, splits=[3, 0, 0]),
     '--splits needs at least one train and one test identity, got 3,0,0'),
    (dict(num_ids=0), '--num-ids must be at least 1, got 0'),
    (dict(images_per_id=0), '--images-per-id must be at least 1, got 0'),
    (dict(num_ids=8_660_521, splits=[8_660_519, 1, 1]),
     '--num-ids 8660521 exceeds the 8660520 unique attribute combinations'),
])
def test_bad_arguments_write_nothing(tmp_path, kwargs, message):
    out = str(tmp_path / 'x')
    with pytest.raises(ValueError) as exc:
        generate(out, **kwargs)
    assert str(exc.value) == message
    assert not os.path.exists(out)


def test_contact_sheet(tiny, tmp_path):
    out, _, _ = tiny
    path = make_contact_sheet(out, str(tmp_path / 'sheet.jpg'))
    sheet = cv2.imread(path)
    # 8 identities (columns) x 2 images (rows), 80x200 tiles, 4 px gaps
    assert sheet.shape == (2 * 204 + 4, 8 * 84 + 4, 3)


def test_loads_through_cuhk_pedes_dataset(tiny):
    out, _, records = tiny
    train = DATASETS.build(
        dict(type='CUHKPEDES', data_root=out, split='train'))
    assert len(train) == 8 * 2 * 2  # one entry per caption
    infos = [train.get_data_info(i) for i in range(len(train))]
    assert sorted({d['gt_label'] for d in infos}) == list(range(8))
    assert {d['pid'] for d in infos} == set(range(1, 9))
    first = records[0]
    assert infos[0]['img_path'] == osp.join(out, 'imgs', first['file_path'])
    assert infos[0]['text'] == first['captions'][0]
    test = DATASETS.build(dict(type='CUHKPEDES', data_root=out, split='test'))
    assert len(test) == 2 * 2  # one entry per gallery image
    for i in range(len(test)):
        info = test.get_data_info(i)
        assert info['pid'] in (11, 12) and len(info['texts']) == 2
    val = DATASETS.build(dict(type='CUHKPEDES', data_root=out, split='val'))
    assert len(val) == 4

import os
import os.path as osp
import shutil

import pytest
from mmengine.dataset import DefaultSampler

from mdrl_plugin.datasets import CUHKPEDES
from mdrl_plugin.registry import DATASETS
from test_datasets._pedes_data import cuhk_records, write_dataset


def test_training_entries_one_per_caption(cuhk_root):
    ds = DATASETS.build(dict(type='CUHKPEDES', data_root=cuhk_root))
    assert isinstance(ds, CUHKPEDES)
    assert not ds.test_mode
    assert len(ds) == 7  # 2 + 2 + 1 + 2 captions
    entries = [ds.get_data_info(i) for i in range(len(ds))]
    # raw ids 5, 3, 5, 9 -> sorted 3, 5, 9 -> labels 1, 0, 1, 2
    assert [e['gt_label'] for e in entries] == [1, 1, 0, 0, 1, 2, 2]
    assert [e['pid'] for e in entries] == [5, 5, 3, 3, 5, 9, 9]
    assert [e['image_id'] for e in entries] == [0, 0, 1, 1, 2, 3, 3]
    assert entries[0]['text'] == 'A man in a red shirt.'
    assert entries[1]['text'] == 'He wears blue pants.'
    assert entries[4]['text'] == 'The man walking.'  # stripped
    assert entries[0]['img_path'] == osp.join(cuhk_root, 'imgs',
                                              'CUHK01/0001.png')
    assert osp.isabs(entries[0]['img_path'])
    assert set(entries[0]) == {'img_path', 'text', 'gt_label', 'image_id',
                               'pid', 'sample_idx'}


def test_training_metainfo(cuhk_root):
    ds = DATASETS.build(dict(type='CUHKPEDES', data_root=cuhk_root))
    meta = ds.metainfo
    assert meta['dataset_name'] == 'CUHK-PEDES'
    assert meta['split'] == 'train'
    assert meta['num_classes'] == 3
    assert meta['num_identities'] == 3
    assert meta['num_images'] == 4
    assert meta['num_captions'] == 7
    assert meta['ann_file'] == osp.join(cuhk_root, 'reid_raw.json')
    assert ds.get_gt_labels().tolist() == [1, 1, 0, 0, 1, 2, 2]
    assert ds.get_cat_ids(2) == [0]


def test_eval_entries_group_captions_per_image(cuhk_root):
    ds = DATASETS.build(dict(type='CUHKPEDES', data_root=cuhk_root,
                             split='test'))
    assert ds.test_mode  # None -> evaluation entries for split 'test'
    assert len(ds) == 3
    entries = [ds.get_data_info(i) for i in range(3)]
    assert [e['texts'] for e in entries] == [
        ['A red dress.', 'A woman.'], ['A woman in red.'],
        ['A man in a hat.', 'A backpack.']]
    assert [e['pid'] for e in entries] == [30, 30, 31]  # raw ids kept
    assert [e['image_id'] for e in entries] == [0, 1, 2]
    assert 'gt_label' not in entries[0] and 'text' not in entries[0]
    meta = ds.metainfo
    assert (meta['split'], meta['num_identities'], meta['num_classes'],
            meta['num_images'], meta['num_captions']) == ('test', 2, 2, 3, 5)
    with pytest.raises(ValueError, match='evaluation entries'):
        ds.get_gt_labels()
    assert ds.get_cat_ids(2) == [31]


def test_val_split_and_forced_test_mode(cuhk_root):
    val = DATASETS.build(dict(type='CUHKPEDES', data_root=cuhk_root,
                              split='val'))
    assert len(val) == 1 and val.get_data_info(0)['texts'] == [
        'A man.', 'A green jacket.']
    # the training split in evaluation layout (e.g. to evaluate on train)
    train_eval = DATASETS.build(dict(type='CUHKPEDES', data_root=cuhk_root,
                                     test_mode=True))
    assert len(train_eval) == 4
    assert train_eval.get_data_info(2)['texts'] == ['The man walking.']
    # the test split in training layout: labels contiguous over test ids
    test_train = DATASETS.build(dict(type='CUHKPEDES', data_root=cuhk_root,
                                     split='test', test_mode=False))
    assert [test_train.get_data_info(i)['gt_label']
            for i in range(len(test_train))] == [0, 0, 0, 1, 1]


@pytest.mark.parametrize('name', ['caption_all.json', 'CUHK-PEDES.json'])
def test_alternative_json_names(tmp_path, name):
    root = write_dataset(str(tmp_path / 'CUHK-PEDES'), name, cuhk_records())
    ds = DATASETS.build(dict(type='CUHKPEDES', data_root=root))
    assert len(ds) == 7
    assert ds.ann_file == osp.join(root, name)


def test_explicit_ann_file_wins(cuhk_root):
    recs = cuhk_records()[:2]
    write_dataset(cuhk_root, 'my_subset.json', recs)
    ds = DATASETS.build(dict(type='CUHKPEDES', data_root=cuhk_root,
                             ann_file='my_subset.json'))
    assert len(ds) == 4 and ds.metainfo['num_identities'] == 2
    absolute = DATASETS.build(dict(
        type='CUHKPEDES', data_root=cuhk_root,
        ann_file=osp.join(cuhk_root, 'my_subset.json')))
    assert len(absolute) == 4


def test_imgs_prefix_and_backslashes_are_normalised(tmp_path):
    recs = cuhk_records()
    recs[0]['file_path'] = 'imgs/CUHK01/0001.png'
    recs[1]['file_path'] = 'CUHK01\\0002.png'
    recs[3]['file_path'] = './cam_a/0004.png'
    root = str(tmp_path / 'CUHK-PEDES')
    write_dataset(root, 'reid_raw.json', cuhk_records())  # real file names
    write_dataset(root, 'reid_raw.json', recs,
                  skip_images=[r['file_path'] for r in recs])
    ds = DATASETS.build(dict(type='CUHKPEDES', data_root=root))
    paths = [ds.get_data_info(i)['img_path'] for i in (0, 2, 5)]
    assert paths == [osp.join(root, 'imgs', p) for p in
                     ('CUHK01/0001.png', 'CUHK01/0002.png', 'cam_a/0004.png')]


def test_duplicate_records_of_one_image_are_merged(tmp_path):
    recs = cuhk_records()
    recs.append(dict(split='test', id=31, file_path='test/0008.png',
                     captions=['Third caption.']))
    root = write_dataset(str(tmp_path / 'CUHK-PEDES'), 'reid_raw.json', recs)
    ds = DATASETS.build(dict(type='CUHKPEDES', data_root=root, split='test'))
    assert len(ds) == 3
    assert ds.get_data_info(2)['texts'] == [
        'A man in a hat.', 'A backpack.', 'Third caption.']
    assert ds.metainfo['num_captions'] == 6


def test_lazy_init_and_unserialized(cuhk_root):
    ds = DATASETS.build(dict(type='CUHKPEDES', data_root=cuhk_root,
                             lazy_init=True))
    assert ds.metainfo['dataset_name'] == 'CUHK-PEDES'
    assert 'num_images' not in ds.metainfo
    assert 'not fully initialised' in repr(ds)
    ds.full_init()
    assert ds.metainfo['num_images'] == 4
    plain = DATASETS.build(dict(type='CUHKPEDES', data_root=cuhk_root,
                                serialize_data=False))
    assert [plain.get_data_info(i) for i in range(7)] == \
        [ds.get_data_info(i) for i in range(7)]
    assert 'num_captions=7' in repr(plain)


def test_works_with_default_sampler_and_subset(cuhk_root):
    ds = DATASETS.build(dict(type='CUHKPEDES', data_root=cuhk_root,
                             split='test'))
    sampler = DefaultSampler(ds, shuffle=False, seed=0)
    assert list(sampler) == [0, 1, 2]
    sub = DATASETS.build(dict(type='CUHKPEDES', data_root=cuhk_root,
                              indices=2))
    assert len(sub) == 2


def test_missing_image_folder(cuhk_root):
    shutil.rmtree(osp.join(cuhk_root, 'imgs'))
    with pytest.raises(FileNotFoundError) as exc:
        DATASETS.build(dict(type='CUHKPEDES', data_root=cuhk_root))
    msg = str(exc.value)
    assert f"image folder '{osp.join(cuhk_root, 'imgs')}' does not exist" \
        in msg
    assert '4 images of split \'train\'' in msg
    # check_files=False skips the check (e.g. remote storage)
    ds = DATASETS.build(dict(type='CUHKPEDES', data_root=cuhk_root,
                             check_files=False))
    assert len(ds) == 7


def test_only_requested_split_images_are_checked(cuhk_root):
    os.remove(osp.join(cuhk_root, 'imgs', 'test', '0007.png'))
    assert len(DATASETS.build(dict(type='CUHKPEDES',
                                   data_root=cuhk_root))) == 7
    with pytest.raises(FileNotFoundError,
                       match=r"1 of 3 images of split 'test'.*test/0007.png"):
        DATASETS.build(dict(type='CUHKPEDES', data_root=cuhk_root,
                            split='test'))

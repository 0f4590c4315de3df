import os.path as osp

import pytest

from mdrl_plugin.registry import DATASETS
from test_datasets._pedes_data import icfg_records, write_dataset


def test_icfg_train_and_test(icfg_root):
    train = DATASETS.build(dict(type='ICFGPEDES', data_root=icfg_root))
    assert len(train) == 3
    assert [train.get_data_info(i)['gt_label'] for i in range(3)] == [0, 0, 1]
    assert train.get_data_info(2)['img_path'] == osp.join(
        icfg_root, 'imgs', 'train/0002/0002_002.jpg')
    assert train.metainfo['dataset_name'] == 'ICFG-PEDES'
    assert train.metainfo['num_classes'] == 2
    test = DATASETS.build(dict(type='ICFGPEDES', data_root=icfg_root,
                               split='test'))
    assert len(test) == 3
    assert [test.get_data_info(i)['texts'] for i in range(3)] == [
        ['A person number 3.'], ['A person number 4.'],
        ['A person number 5.']]
    assert [test.get_data_info(i)['pid'] for i in range(3)] == [3, 4, 4]


def test_icfg_has_no_val_split(icfg_root):
    with pytest.raises(ValueError) as exc:
        DATASETS.build(dict(type='ICFGPEDES', data_root=icfg_root,
                            split='val'))
    assert str(exc.value) == (
        "ICFG-PEDES has no 'val' split (the release ships only 'train' and "
        "'test'); use split='test' for evaluation.")


def test_icfg_record_with_val_split_is_malformed(tmp_path):
    recs = icfg_records()
    recs[4]['split'] = 'val'
    root = write_dataset(str(tmp_path / 'ICFG-PEDES'), 'ICFG-PEDES.json',
                         recs)
    with pytest.raises(ValueError,
                       match=r"record 4 \(file_path 'test/0004/0004_004.jpg'"
                       r"\): unknown split 'val'; allowed values: "
                       r'train, test'):
        DATASETS.build(dict(type='ICFGPEDES', data_root=root))


def test_icfg_underscore_json_name(tmp_path):
    root = write_dataset(str(tmp_path / 'ICFG-PEDES'), 'ICFG_PEDES.json',
                         icfg_records())
    ds = DATASETS.build(dict(type='ICFGPEDES', data_root=root, split='test'))
    assert ds.ann_file.endswith('ICFG_PEDES.json') and len(ds) == 3

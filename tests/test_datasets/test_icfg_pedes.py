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
        "'test'); use split='test' for evaluation, or hold out training "
        "identities as val with val_from_train=dict(num_ids=..., seed=...).")


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


# ---------------------------------------------------------------- val_from_train
def _held_out_records():
    """Train ids 7, 1, 5, 2 (two images of id 5 and of id 2), test ids 3, 4."""
    out = []
    for i, (split, pid) in enumerate([
            ('train', 7), ('train', 1), ('train', 5), ('train', 2),
            ('train', 5), ('train', 2), ('test', 3), ('test', 4)]):
        out.append(dict(
            split=split, id=pid, captions=[f'A person number {i}.'],
            file_path=f'{split}/{pid:04d}/{pid:04d}_{i:03d}.jpg'))
    return out


@pytest.fixture
def held_out_root(tmp_path):
    return write_dataset(str(tmp_path / 'ICFG-PEDES'), 'ICFG-PEDES.json',
                         _held_out_records())


def test_select_val_ids_is_the_documented_hash_rule():
    from mdrl_plugin.datasets import ICFGPEDES
    # the K ids with the smallest SHA-1 of f'{seed}:{id}'; these values are
    # the rule's output and must never change (they define the val split)
    assert ICFGPEDES.select_val_ids(range(1, 11), 3, seed=0) == [2, 3, 10]
    assert ICFGPEDES.select_val_ids(range(1, 11), 3, seed=1) == [1, 4, 7]
    assert ICFGPEDES.select_val_ids([7, 1, 5, 2, 5], 2, seed=1) == [1, 7]
    # independent of the order and repetition of the input
    assert ICFGPEDES.select_val_ids([10, 3, 2, 2, 9, 1, 4, 5, 6, 7, 8], 3) \
        == [2, 3, 10]
    full = ICFGPEDES.select_val_ids(range(1, 3103), 300, seed=0)
    assert len(full) == 300 and full[:5] == [10, 12, 37, 46, 52]


def test_val_from_train_splits_train_identities(held_out_root):
    held = dict(num_ids=2, seed=1)  # holds out ids 1 and 7
    train = DATASETS.build(dict(type='ICFGPEDES', data_root=held_out_root,
                                val_from_train=held))
    assert [train.get_data_info(i)['pid'] for i in range(len(train))] == \
        [5, 2, 5, 2]
    # relabelled contiguously over the remaining ids in sorted raw-id order
    assert [train.get_data_info(i)['gt_label'] for i in range(len(train))] \
        == [1, 0, 1, 0]
    assert train.metainfo['num_classes'] == 2
    assert train.metainfo['val_from_train'] == dict(num_ids=2, seed=1)

    val = DATASETS.build(dict(type='ICFGPEDES', data_root=held_out_root,
                              split='val', val_from_train=held))
    assert val.test_mode
    assert [(val.get_data_info(i)['pid'], val.get_data_info(i)['texts'])
            for i in range(len(val))] == [
                (7, ['A person number 0.']), (1, ['A person number 1.'])]
    assert val.metainfo['num_identities'] == 2
    assert val.get_data_info(0)['img_path'] == osp.join(
        held_out_root, 'imgs', 'train/0007/0007_000.jpg')

    # the test split is the release's, whatever is held out
    test = DATASETS.build(dict(type='ICFGPEDES', data_root=held_out_root,
                               split='test', val_from_train=held))
    assert [test.get_data_info(i)['pid'] for i in range(len(test))] == [3, 4]


def test_val_from_train_default_seed_is_zero(held_out_root):
    val = DATASETS.build(dict(type='ICFGPEDES', data_root=held_out_root,
                              split='val', val_from_train=dict(num_ids=1)))
    assert [val.get_data_info(i)['pid'] for i in range(len(val))] == [2, 2]
    assert val.metainfo['val_from_train'] == dict(num_ids=1, seed=0)


def test_without_val_from_train_the_release_splits_are_kept(held_out_root):
    train = DATASETS.build(dict(type='ICFGPEDES', data_root=held_out_root))
    assert train.metainfo['num_classes'] == 4
    assert train.metainfo['val_from_train'] is None


@pytest.mark.parametrize('val_from_train, message', [
    (dict(num_ids=0), 'val_from_train.num_ids must be an integer >= 1, got 0.'),
    (dict(num_ids='3'), "val_from_train.num_ids must be an integer >= 1, "
     "got '3'."),
    (dict(num_ids=1, seed=0.5), 'val_from_train.seed must be an integer, '
     'got 0.5.'),
    (dict(ids=3), "val_from_train must be dict(num_ids=int, seed=int) or "
     "None, got {'ids': 3}."),
    (300, 'val_from_train must be dict(num_ids=int, seed=int) or None, '
     'got 300.'),
])
def test_bad_val_from_train(held_out_root, val_from_train, message):
    with pytest.raises(ValueError) as exc:
        DATASETS.build(dict(type='ICFGPEDES', data_root=held_out_root,
                            val_from_train=val_from_train))
    assert str(exc.value) == f'ICFG-PEDES: {message}'


def test_val_from_train_needs_fewer_ids_than_train(held_out_root):
    with pytest.raises(ValueError) as exc:
        DATASETS.build(dict(type='ICFGPEDES', data_root=held_out_root,
                            split='val', val_from_train=dict(num_ids=4)))
    assert str(exc.value) == (
        'ICFG-PEDES: val_from_train.num_ids=4 must be smaller than the 4 '
        'training identities of '
        f"{osp.join(held_out_root, 'ICFG-PEDES.json')}.")


def test_shipped_icfg_configs_hold_out_val():
    from mmengine.config import Config

    from mdrl_test_utils import REPO_ROOT
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs', 'mdrl_vit_bert_icfg.py'))
    held = dict(num_ids=300, seed=0)
    assert cfg.train_dataloader.dataset.val_from_train == held
    assert cfg.val_dataloader.dataset.val_from_train == held
    assert cfg.val_dataloader.dataset.split == 'val'
    assert cfg.test_dataloader.dataset.split == 'test'
    assert cfg.model.num_classes == 3102 - 300
    paper = Config.fromfile(
        osp.join(REPO_ROOT, 'configs', 'mdrl_vit_bert_icfg_val_on_test.py'))
    assert paper.train_dataloader.dataset.val_from_train is None
    assert paper.val_dataloader.dataset.val_from_train is None
    assert paper.val_dataloader.dataset.split == 'test'
    assert paper.model.num_classes == 3102


def test_shipped_icfg_config_trains_and_validates_on_held_out_ids(
        held_out_root, tiny_bert_dir, tmp_path):
    from mmengine.config import Config
    from mmengine.runner import Runner

    from mdrl_test_utils import REPO_ROOT, shrink_config
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs', 'mdrl_vit_bert_icfg.py'))
    shrink_config(cfg, tiny_bert_dir, held_out_root)
    held = dict(num_ids=2, seed=1)  # ids 1 and 7 are val, 2 and 5 train
    cfg.train_dataloader.dataset.val_from_train = held
    cfg.val_dataloader.dataset.val_from_train = held
    cfg.train_dataloader.batch_size = 2
    cfg.model.num_classes = 2
    cfg.work_dir = str(tmp_path)
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.val_dataloader.dataset.metainfo['num_identities'] == 2
    metrics = runner.val_loop.run()
    assert set(metrics) == {'R1', 'R5', 'R10', 'mAP', 'mINP'}
    # two val images of two ids: R1 is 0, 50 or 100
    assert metrics['R1'] in (0.0, 50.0, 100.0) and metrics['R5'] == 100.0

import os.path as osp

from mdrl_plugin.registry import DATASETS


def test_rstpreid_splits(rstp_root):
    train = DATASETS.build(dict(type='RSTPReid', data_root=rstp_root))
    assert len(train) == 6  # 3 images x 2 captions
    infos = [train.get_data_info(i) for i in range(6)]
    assert [i['gt_label'] for i in infos] == [0, 0, 1, 1, 0, 0]
    assert [i['image_id'] for i in infos] == [0, 0, 1, 1, 2, 2]
    assert infos[0]['img_path'] == osp.join(rstp_root, 'imgs',
                                            '0010_c0_0000.jpg')
    assert infos[3]['text'] == 'caption two of 1'
    meta = train.metainfo
    assert (meta['dataset_name'], meta['num_classes'], meta['num_images'],
            meta['num_captions']) == ('RSTPReid', 2, 3, 6)
    val = DATASETS.build(dict(type='RSTPReid', data_root=rstp_root,
                              split='val'))
    assert len(val) == 1 and val.get_data_info(0)['pid'] == 12
    test = DATASETS.build(dict(type='RSTPReid', data_root=rstp_root,
                               split='test'))
    assert [test.get_data_info(i)['texts'] for i in range(2)] == [
        ['caption one of 4', 'caption two of 4'],
        ['caption one of 5', 'caption two of 5']]
    assert test.metainfo['num_captions'] == 4

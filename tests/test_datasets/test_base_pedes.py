import json
import os
import os.path as osp

import pytest

from mdrl_plugin.datasets import (
    AnnotationFormatError,
    AnnotationNotFoundError,
    BasePedesDataset,
    DatasetNotFoundError,
    EmptySplitError,
    MissingImagesError,
)
from mdrl_plugin.registry import DATASETS
from test_datasets._pedes_data import cuhk_records, write_dataset


def build(root, **kwargs):
    return DATASETS.build(dict(type='CUHKPEDES', data_root=root, **kwargs))


def write_json_text(root, text, name='reid_raw.json'):
    with open(osp.join(root, name), 'w') as f:
        f.write(text)


def write_records(tmp_path, recs, **kwargs):
    return write_dataset(str(tmp_path / 'CUHK-PEDES'), 'reid_raw.json', recs,
                         **kwargs)


def test_missing_data_root(tmp_path):
    missing = str(tmp_path / 'nowhere')
    with pytest.raises(DatasetNotFoundError) as exc:
        build(missing)
    assert isinstance(exc.value, FileNotFoundError)
    assert str(exc.value) == (
        f"CUHK-PEDES: data_root '{missing}' does not exist; expected the "
        f'dataset folder that holds imgs/ and the annotation JSON.')
    a_file = tmp_path / 'file.txt'
    a_file.write_text('x')
    with pytest.raises(DatasetNotFoundError, match='is not a folder'):
        build(str(a_file))


def test_no_annotation_file_lists_names_tried(tmp_path):
    root = tmp_path / 'CUHK-PEDES'
    (root / 'imgs').mkdir(parents=True)
    with pytest.raises(AnnotationNotFoundError) as exc:
        build(str(root))
    msg = str(exc.value)
    for name in ('reid_raw.json', 'caption_all.json', 'CUHK-PEDES.json'):
        assert repr(osp.join(str(root), name)) in msg
    assert msg.startswith('CUHK-PEDES: no annotation file found; tried ')
    assert 'pass ann_file=<name>' in msg


def test_annotation_in_subfolder_gives_hint(tmp_path, cuhk_root):
    parent = osp.dirname(cuhk_root)
    with pytest.raises(AnnotationNotFoundError,
                       match=r"did you mean data_root='.*CUHK-PEDES'\?"):
        build(parent)


def test_explicit_missing_ann_file(cuhk_root):
    with pytest.raises(AnnotationNotFoundError) as exc:
        build(cuhk_root, ann_file='other.json')
    assert str(exc.value).startswith(
        "CUHK-PEDES: no annotation file found; tried "
        f"'{osp.join(cuhk_root, 'other.json')}'.")


def test_malformed_json_names_line_and_column(cuhk_root):
    write_json_text(cuhk_root, '[\n  {"split": "train",\n   "id": 1,,\n}]')
    with pytest.raises(AnnotationFormatError) as exc:
        build(cuhk_root)
    assert isinstance(exc.value, ValueError)
    assert str(exc.value) == (
        f"{osp.join(cuhk_root, 'reid_raw.json')}: malformed JSON at line 3, "
        f'column 12: Expecting property name enclosed in double quotes.')


def test_json_that_is_not_a_list(cuhk_root):
    write_json_text(cuhk_root, '{"annotations": []}')
    with pytest.raises(AnnotationFormatError,
                       match=r'expected a JSON list of records at the top '
                       r"level, got an object with keys 'annotations'\.$"):
        build(cuhk_root)


@pytest.mark.parametrize('change, expected', [
    (lambda r: r.pop('captions'),
     "record 1 (file_path 'CUHK01/0002.png'): no 'captions' field; expected "
     'a non-empty list of strings'),
    (lambda r: r.update(captions=[]),
     "record 1 (file_path 'CUHK01/0002.png'): 'captions' is empty"),
    (lambda r: r.update(captions=['  ', '']),
     "record 1 (file_path 'CUHK01/0002.png'): all 2 captions are blank; "
     'expected at least one non-empty caption'),
    (lambda r: r.update(captions=['ok', ' ']),
     "record 1 (file_path 'CUHK01/0002.png'): 1 of 2 captions are blank"),
    (lambda r: r.update(captions='A single string.'),
     "record 1 (file_path 'CUHK01/0002.png'): 'captions' must be a list of "
     "strings, got str 'A single string.'"),
    (lambda r: r.update(split='gallery'),
     "record 1 (file_path 'CUHK01/0002.png'): unknown split 'gallery'; "
     'allowed values: train, val, test'),
    (lambda r: r.pop('split'),
     "record 1 (file_path 'CUHK01/0002.png'): no 'split' field; allowed "
     'values: train, val, test'),
    (lambda r: r.update(id='abc'),
     "record 1 (file_path 'CUHK01/0002.png'): expected an integer identity "
     "in 'id', got 'abc'"),
    (lambda r: r.pop('file_path'),
     "record 1: no image path; expected one of the fields ['file_path', "
     "'img_path'] (got fields ['captions', 'id', 'processed_tokens', "
     "'split'])"),
])
def test_bad_record_is_reported_by_index(tmp_path, change, expected):
    recs = cuhk_records()
    change(recs[1])
    root = write_records(tmp_path, recs)
    with pytest.raises(AnnotationFormatError) as exc:
        build(root)
    ann = osp.join(root, 'reid_raw.json')
    assert str(exc.value) == (
        f'{ann}: 1 invalid record(s) in CUHK-PEDES:\n  {expected}')


def test_many_bad_records_are_summarised(tmp_path):
    recs = cuhk_records()
    for r in recs:
        r['captions'] = []
    root = write_records(tmp_path, recs)
    with pytest.raises(AnnotationFormatError) as exc:
        build(root)
    lines = str(exc.value).splitlines()
    assert lines[0].endswith('8 invalid record(s) in CUHK-PEDES:')
    assert len(lines) == 6 and lines[-1] == (
        "  record 4 (file_path 'val/0005.png'): 'captions' is empty "
        'and 3 more')


def test_string_ids_of_digits_are_accepted(tmp_path):
    recs = cuhk_records()
    recs[0]['id'] = '5'
    ds = build(write_records(tmp_path, recs))
    assert ds.get_data_info(0)['pid'] == 5


def test_image_listed_with_two_ids(tmp_path):
    recs = cuhk_records()
    recs[1]['file_path'] = recs[0]['file_path']
    root = write_records(tmp_path, recs)
    with pytest.raises(AnnotationFormatError,
                       match=r"record 1 \(file_path 'CUHK01/0001.png'\): "
                       r'image also listed in record 0 with id 5, here with '
                       r'id 3; expected one id per image'):
        build(root)


def test_missing_images_are_counted_and_listed(tmp_path):
    recs = cuhk_records()
    extra = [dict(split='train', id=7, file_path=f'extra/{i}.png',
                  captions=['x']) for i in range(6)]
    root = write_records(tmp_path, recs + extra,
                         skip_images=[r['file_path'] for r in extra] +
                         ['CUHK01/0002.png'])
    with pytest.raises(MissingImagesError) as exc:
        build(root)
    assert isinstance(exc.value, FileNotFoundError)
    img_dir = osp.join(root, 'imgs')
    assert str(exc.value) == (
        f"CUHK-PEDES: 7 of 10 images of split 'train' listed in "
        f"{osp.join(root, 'reid_raw.json')} do not exist under '{img_dir}'; "
        f'first missing: CUHK01/0002.png, extra/0.png, extra/1.png, '
        f'extra/2.png, extra/3.png and 2 more')


def test_split_without_records(tmp_path):
    recs = [r for r in cuhk_records() if r['split'] != 'val']
    root = write_records(tmp_path, recs)
    with pytest.raises(EmptySplitError) as exc:
        build(root, split='val')
    assert isinstance(exc.value, ValueError)
    assert str(exc.value) == (
        f"{osp.join(root, 'reid_raw.json')}: no records with split 'val' "
        f'(records per split: train=4, test=3).')


def test_empty_annotation_list(cuhk_root):
    write_json_text(cuhk_root, '[]')
    with pytest.raises(EmptySplitError,
                       match=r'no valid records at all'):
        build(cuhk_root)


def test_unknown_split_argument(cuhk_root):
    with pytest.raises(ValueError) as exc:
        build(cuhk_root, split='gallery')
    assert str(exc.value) == ("CUHK-PEDES: unknown split 'gallery'; allowed: "
                              "'train', 'val', 'test'.")


def test_base_class_as_generic_json_dataset(tmp_path, capsys):
    recs = cuhk_records()
    root = str(tmp_path / 'MyPedes')
    for r in recs:
        r['img_path'] = r.pop('file_path')
    write_dataset(root, 'anno.json', recs, path_key='img_path')
    os.rename(osp.join(root, 'imgs'), osp.join(root, 'pictures'))
    ds = DATASETS.build(dict(
        type='BasePedesDataset', data_root=root, ann_file='anno.json',
        data_prefix=dict(img_path='pictures'),
        metainfo=dict(dataset_name='MyPedes')))
    assert type(ds) is BasePedesDataset
    assert ds.metainfo['dataset_name'] == 'MyPedes'
    captured = capsys.readouterr()  # no "is not a meta file" warning
    assert 'meta file' not in captured.out + captured.err
    assert len(ds) == 7
    assert ds.get_data_info(0)['img_path'] == osp.join(
        root, 'pictures', 'CUHK01/0001.png')
    with pytest.raises(AnnotationNotFoundError,
                       match=r'MyPedes: no annotation file given; pass '
                       r'ann_file=<the JSON file of the dataset>\.'):
        DATASETS.build(dict(type='BasePedesDataset', data_root=root,
                            metainfo=dict(dataset_name='MyPedes')))


def test_bad_data_prefix(cuhk_root):
    with pytest.raises(ValueError,
                       match=r'data_prefix must be dict\(img_path=<image '
                       r"folder>\), got keys \['img'\]"):
        build(cuhk_root, data_prefix=dict(img='imgs'))


def test_bom_and_non_utf8(cuhk_root):
    ann = osp.join(cuhk_root, 'reid_raw.json')
    with open(ann, 'rb') as f:
        data = f.read()
    with open(ann, 'wb') as f:
        f.write(b'\xef\xbb\xbf' + data)  # UTF-8 BOM is accepted
    assert len(build(cuhk_root)) == 7
    with open(ann, 'wb') as f:
        f.write(b'[\xff\xfe]')
    with pytest.raises(AnnotationFormatError,
                       match=r'not a UTF-8 text file \(byte 1'):
        build(cuhk_root)


def test_unicode_captions_survive(tmp_path):
    recs = cuhk_records()
    recs[0]['captions'] = ['Une femme en robe \u00e9t\u00e9.']
    root = write_records(tmp_path, recs)
    ann = osp.join(root, 'reid_raw.json')
    with open(ann) as f:
        assert json.load(f)[0]['captions'][0].endswith('\u00e9t\u00e9.')
    assert build(root).get_data_info(0)['text'] == \
        'Une femme en robe \u00e9t\u00e9.'

"""Identity labels: JSON maps and PEDES annotation files."""
import json
import os.path as osp
import re

import pytest

from mdrl_plugin.apis import load_labels
from mdrl_plugin.apis.labels import label_candidates, resolve_label_map


def test_candidates(tmp_path):
    root = str(tmp_path)
    assert label_candidates('a/b.jpg', root) == [
        osp.join(root, 'a/b.jpg'), osp.join(root, 'imgs/a/b.jpg')]
    assert label_candidates('imgs\\a\\b.jpg', root) == [
        osp.join(root, 'imgs/a/b.jpg'), osp.join(root, 'imgs/imgs/a/b.jpg'),
        osp.join(root, 'a/b.jpg')]
    assert label_candidates('/x/y.png', root) == ['/x/y.png']


def test_json_map(tmp_path):
    f = tmp_path / 'labels.json'
    f.write_text(json.dumps({'cam0/a.jpg': 3, '/abs/b.jpg': 'alice'}))
    labels = load_labels(str(f), root=str(tmp_path / 'g'))
    assert labels[str(tmp_path / 'g' / 'cam0' / 'a.jpg')] == 3
    assert labels[str(tmp_path / 'g' / 'imgs' / 'cam0' / 'a.jpg')] == 3
    assert labels['/abs/b.jpg'] == 'alice'


def test_primary_candidate_wins(tmp_path):
    root = str(tmp_path)
    # 'imgs/x.jpg' primarily means root/imgs/x.jpg; 'x.jpg' primarily root/x.jpg
    out = resolve_label_map({'x.jpg': 1, 'imgs/x.jpg': 2}, root)
    assert out[osp.join(root, 'x.jpg')] == 1
    assert out[osp.join(root, 'imgs', 'x.jpg')] == 2


def test_pedes_files(tmp_path):
    cuhk = tmp_path / 'reid_raw.json'
    cuhk.write_text(json.dumps([
        {'split': 'train', 'captions': ['a'], 'file_path': 'CUHK01/1.png',
         'processed_tokens': [['a']], 'id': 1},
        {'split': 'test', 'captions': ['b'], 'file_path': 'CUHK01/2.png',
         'id': '12'}]))
    labels = load_labels(str(cuhk), root=str(tmp_path))
    assert labels[str(tmp_path / 'imgs' / 'CUHK01' / '1.png')] == 1
    assert labels[str(tmp_path / 'imgs' / 'CUHK01' / '2.png')] == 12
    rstp = tmp_path / 'data_captions.json'
    rstp.write_text(json.dumps([{'id': 0, 'img_path': '0000_c14_0031.jpg',
                                 'captions': ['x', 'y'], 'split': 'test'}]))
    labels = load_labels(str(rstp), root=str(tmp_path))
    assert labels[str(tmp_path / '0000_c14_0031.jpg')] == 0


@pytest.mark.parametrize('content, message', [
    ([{'file_path': 'a.jpg'}],
     "record 0 has fields ['file_path']; a PEDES annotation record needs "
     '"file_path" (CUHK-PEDES, ICFG-PEDES) or "img_path" (RSTPReid) and "id"'),
    ([{'file_path': 'a.jpg', 'id': 1}, 'oops'],
     'record 1 is str, expected an object'),
    ([{'file_path': 'a.jpg', 'id': 1}, {'file_path': 'a.jpg', 'id': 2}],
     "image 'a.jpg' is listed with ids 1 and 2 (record 1); expected one id "
     'per image'),
    ([{'img_path': '', 'id': 1}],
     "record 0: 'img_path' must be a non-empty string, got ''"),
    ([{'img_path': 'a.jpg', 'id': True}],
     "record 0 ('a.jpg') field \"id\": an identity label must be an int or a "
     'non-empty string, got True'),
    ({'a.jpg': 1.5}, "image 'a.jpg': an identity label must be an int or a "
     'non-empty string, got 1.5'),
    (3, 'holds a JSON int; expected an object'),
])
def test_bad_files(tmp_path, content, message):
    f = tmp_path / 'labels.json'
    f.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=re.escape(message)):
        load_labels(str(f), root=str(tmp_path))


def test_missing_and_malformed(tmp_path):
    with pytest.raises(FileNotFoundError, match='Labels file .* does not exist'):
        load_labels(str(tmp_path / 'none.json'))
    f = tmp_path / 'bad.json'
    f.write_text('{"a.jpg": 1,')
    with pytest.raises(ValueError, match='is not valid UTF-8 JSON'):
        load_labels(str(f))


def test_duplicate_path_with_two_labels(tmp_path):
    with pytest.raises(ValueError, match='is listed twice with different'):
        resolve_label_map({'a.jpg': 1, './a.jpg': 2}, str(tmp_path))


def test_pedes_file_labels_a_subfolder_of_imgs(tmp_path):
    ds = tmp_path / 'CUHK-PEDES'
    ann = ds / 'reid_raw.json'
    ds.mkdir()
    ann.write_text(json.dumps([
        {'split': 'test', 'id': 5, 'file_path': 'test_query/p5_1.jpg',
         'captions': ['a man']},
        {'split': 'test', 'id': 6, 'file_path': 'p6.jpg', 'captions': ['x']}]))
    gallery = ds / 'imgs' / 'test_query'
    labels = load_labels(str(ann), root=str(gallery))
    # via the labels file's folder: <ds>/imgs/test_query/p5_1.jpg
    assert labels[str(gallery / 'p5_1.jpg')] == 5
    # via the gallery root: <gallery>/p6.jpg (wins over <ds>/p6.jpg)
    assert labels[str(gallery / 'p6.jpg')] == 6
    assert labels[str(ds / 'imgs' / 'p6.jpg')] == 6


def test_pedes_records_use_the_datasets_parser(tmp_path, monkeypatch):
    from mdrl_plugin.apis import labels as labels_module
    from mdrl_plugin.datasets import annotation
    calls = []

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return annotation.parse_pedes_records(*args, **kwargs)

    monkeypatch.setattr(labels_module, 'parse_pedes_records', spy)
    f = tmp_path / 'ann.json'
    # ids must be integers, as for the datasets
    f.write_text(json.dumps([{'file_path': 'a.jpg', 'id': 'alice'}]))
    with pytest.raises(ValueError, match=re.escape(
            "record 0 ('a.jpg') field \"id\": a PEDES identity must be an "
            "integer (or a string of digits), got 'alice'")):
        load_labels(str(f), root=str(tmp_path))
    assert calls == [dict(allowed_splits=None, img_dir_name='',
                          require_captions=False)]
    # paths are normalised by the parser: './a.jpg' is 'a.jpg'
    f.write_text(json.dumps([{'file_path': 'a.jpg', 'id': 1},
                             {'file_path': './a.jpg', 'id': 2}]))
    with pytest.raises(ValueError, match=re.escape(
            "image 'a.jpg' is listed with ids 1 and 2 (record 1)")):
        load_labels(str(f), root=str(tmp_path))

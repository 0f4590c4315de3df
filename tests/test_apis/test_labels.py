"""Identity labels: one format, a JSON object {image path: identity}."""
import json
import os
import os.path as osp
import re

import pytest

from mdrl_deploy import read_labels


def test_paths_are_absolute_or_relative_to_the_gallery(tmp_path):
    f = tmp_path / 'labels.json'
    f.write_text(json.dumps({'cam0/a.jpg': 3, '/abs/b.jpg': 'alice',
                             'cam1\\c.jpg': 4, './cam0/../d.jpg': 5}))
    root = str(tmp_path / 'g')
    assert read_labels(str(f), root) == {
        osp.join(root, 'cam0', 'a.jpg'): 3, '/abs/b.jpg': 'alice',
        osp.join(root, 'cam1', 'c.jpg'): 4, osp.join(root, 'd.jpg'): 5}
    # a dict is the same format; without a gallery folder: the working dir
    assert read_labels({'a.jpg': 1}, None) == {
        osp.join(os.getcwd(), 'a.jpg'): 1}


@pytest.mark.parametrize('content, message', [
    ([{'file_path': 'a.jpg', 'id': 1}],
     'holds a JSON list; expected an object {"image path": identity} (for '
     'a PEDES annotation list, see docs/search.md, "Labels").'),
    (3, 'holds a JSON int; expected an object'),
    ({'a.jpg': 1.5}, "image 'a.jpg': an identity label must be an int or a "
     'non-empty string, got 1.5'),
    ({'a.jpg': True}, 'got True'),
    ({'a.jpg': ' '}, "got ' '"),
    ({'': 1}, "image paths must be non-empty strings, got ''"),
    ({'a.jpg': 1, './a.jpg': 2}, 'a.jpg\' is listed twice with different '
     'labels (1 and 2)'),
])
def test_bad_files(tmp_path, content, message):
    f = tmp_path / 'labels.json'
    f.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=re.escape(
            f'Labels file {str(f)!r}')) as info:
        read_labels(str(f), str(tmp_path))
    assert message in str(info.value)


def test_missing_and_malformed(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(
            f"Labels file {str(tmp_path / 'none.json')!r} does not exist.")):
        read_labels(str(tmp_path / 'none.json'), None)
    f = tmp_path / 'bad.json'
    f.write_text('{"a.jpg": 1,')
    with pytest.raises(ValueError, match='is not valid UTF-8 JSON'):
        read_labels(str(f), None)
    f.write_bytes(b'\xff\xfe{}')
    with pytest.raises(ValueError, match='is not valid UTF-8 JSON'):
        read_labels(str(f), None)
    with pytest.raises(ValueError, match=re.escape(
            "labels, image 'a.jpg': an identity label must be")):
        read_labels({'a.jpg': None}, None)

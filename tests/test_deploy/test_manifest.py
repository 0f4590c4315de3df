"""load_manifest: an export folder is read, or refused with one clear line."""
import json
import os.path as osp
import re

import pytest

from mdrl_deploy import ExportFormatError, load_manifest

GOOD = dict(
    format='mdrl-onnx-export', version=1,
    image=dict(height=32, width=16, mean=[0, 0, 0], std=[1, 1, 1], channel_order='rgb'),
    text=dict(max_length=16, tokenizer='tokenizer'),
    feature=dict(dim=32, layout='global'), fingerprint=dict(feature_dim=32),
    files=dict(image='image_encoder.onnx', text='text_encoder.onnx'))


def write_export(folder, manifest):
    folder.mkdir(exist_ok=True)
    for name in ('image_encoder.onnx', 'text_encoder.onnx'):
        (folder / name).write_bytes(b'')
    (folder / 'tokenizer').mkdir(exist_ok=True)
    path = folder / 'mdrl_export.json'
    path.write_text(manifest if isinstance(manifest, str) else json.dumps(manifest))
    return repr(str(path))


def test_a_complete_export_is_read_with_absolute_paths(tmp_path):
    write_export(tmp_path / 'export', GOOD)
    manifest = load_manifest(str(tmp_path / 'export'))
    assert manifest['files'] == {
        k: str(tmp_path / 'export' / v) for k, v in dict(
            image='image_encoder.onnx', text='text_encoder.onnx',
            tokenizer='tokenizer').items()}


@pytest.mark.parametrize('change, message', [
    ('[1, 2]', "{path}: format is None, expected 'mdrl-onnx-export'."),
    ('{', '{path} is not valid JSON: '),
    (dict(format='other'), "{path}: format is 'other', expected 'mdrl-onnx-export'."),
    (dict(version=2), '{path}: export version 2 is not supported (this code reads version '
     '1); export the checkpoint again.'),
    (dict(text=dict(max_length=16)), "{path}: section 'text' lacks ['tokenizer']."),
    (dict(files=None), "{path}: section 'files' lacks ['image', 'text']."),
    (dict(fingerprint=[]), '{path}: no "fingerprint" object.'),
])
def test_a_bad_manifest_is_refused_naming_the_file(tmp_path, change, message):
    manifest = change if isinstance(change, str) else dict(GOOD, **change)
    path = write_export(tmp_path / 'export', manifest)
    with pytest.raises(ExportFormatError, match=re.escape(message.format(path=path))):
        load_manifest(str(tmp_path / 'export'))


def test_missing_folder_manifest_or_file(tmp_path):
    folder = tmp_path / 'export'
    with pytest.raises(FileNotFoundError, match=re.escape(
            f'Export folder {str(folder)!r} does not exist; write one with `python '
            'tools/export.py CONFIG CHECKPOINT --out DIR`.')):
        load_manifest(str(folder))
    folder.mkdir()
    with pytest.raises(FileNotFoundError, match=re.escape(
            f'{str(folder)!r} has no mdrl_export.json: it is not an export folder')):
        load_manifest(str(folder))
    path = write_export(folder, GOOD)
    missing = osp.join(str(folder), 'text_encoder.onnx')
    (folder / 'text_encoder.onnx').unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(
            f'{path} names the text file {missing!r}, which does not exist; export the '
            'checkpoint again.')):
        load_manifest(str(folder))

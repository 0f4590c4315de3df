"""tools/make_demo_data.py: the command line of
mdrl_plugin.datasets.synthetic (the generator's own tests are in
tests/test_datasets/test_synthetic/)."""
import importlib.util
import json
import os
import os.path as osp
import subprocess
import sys

import cv2
import pytest

from mdrl_test_utils import REPO_ROOT, tree_bytes

_spec = importlib.util.spec_from_file_location(
    'make_demo_data', osp.join(REPO_ROOT, 'tools', 'make_demo_data.py'))
mdd = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mdd)

SMALL = ['--num-ids', '6', '--images-per-id', '1', '--splits', '4,1,1']


def test_main_prints_a_summary_and_repeats_itself(tmp_path, capsys):
    out = str(tmp_path / 'cli')
    sheet = str(tmp_path / 'sheet.jpg')
    mdd.main([out, *SMALL, '--seed', '5', '--contact-sheet', sheet])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(
        f'Wrote a synthetic CUHK-PEDES-style dataset to {out} in ')
    assert lines[1:] == [
        'split    ids  images  captions',
        'train      4       4         8',
        'val        1       1         2',
        'test       1       1         2',
        f"annotations: {osp.join(out, 'reid_raw.json')}",
        f"images:      {osp.join(out, 'imgs')}",
        f'contact sheet: {sheet}',
    ]
    with open(osp.join(out, 'reid_raw.json')) as f:
        assert len(json.load(f)) == 6
    # 6 identities (columns) x 1 image, 80x200 tiles, 4 px gaps
    assert cv2.imread(sheet).shape == (2 * 204 + 4, 6 * 84 + 4, 3)
    again = str(tmp_path / 'again')
    mdd.main([again, *SMALL, '--seed', '5'])
    assert tree_bytes(again) == tree_bytes(out)


def _error(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        mdd.main(argv)
    assert exc.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_argument_errors(tmp_path, capsys):
    out = str(tmp_path / 'x')
    prefix = 'make_demo_data.py: error: '
    assert _error([out, '--num-ids', '10', '--splits', '5,2,2'], capsys) == \
        prefix + '--splits 5,2,2 sum to 9, expected --num-ids 10'
    for bad in ('200,100', '200,-1,101', 'a,b,c'):
        assert _error([out, '--splits', bad], capsys) == prefix + (
            '--splits must be three non-negative integers TRAIN,VAL,TEST, '
            f'got {bad!r}')
    assert _error([out, '--images-per-id', '0'], capsys) == \
        prefix + '--images-per-id must be at least 1, got 0'
    assert _error([out, '--separated-eval'], capsys) == \
        'make_demo_data.py: error: unrecognized arguments: --separated-eval'
    assert not os.path.exists(out)  # nothing written on errors


def test_non_empty_out_needs_overwrite(tmp_path, capsys):
    out = tmp_path / 'busy'
    out.mkdir()
    (out / 'notes.txt').write_text('keep me')
    args = [str(out), '--num-ids', '3', '--images-per-id', '1', '--splits',
            '1,1,1']
    assert _error(args, capsys) == (
        f'make_demo_data.py: error: OUT {out} exists and is not empty; pass '
        '--overwrite to replace its imgs/ and reid_raw.json')
    assert sorted(os.listdir(out)) == ['notes.txt']
    mdd.main(args + ['--overwrite'])
    stale = out / 'imgs' / 'train_query' / 'stale.jpg'
    stale.write_bytes(b'old')
    mdd.main(args + ['--overwrite'])
    assert not stale.exists()  # imgs/ is replaced, not merged
    assert sorted(os.listdir(out)) == [
        'imgs', 'labels_test_query.json', 'labels_train_query.json',
        'labels_val_query.json', 'notes.txt', 'reid_raw.json']
    assert (out / 'notes.txt').read_text() == 'keep me'
    (tmp_path / 'file').write_text('')
    assert _error([str(tmp_path / 'file')], capsys) == (
        f'make_demo_data.py: error: OUT {tmp_path / "file"} exists and is '
        'not a directory')


def test_the_command_line_imports_neither_torch_nor_the_plugin(tmp_path):
    # the generator needs NumPy and OpenCV only; importing mdrl_plugin
    # (torch, MMEngine, timm) cost `make demo` about 10 s
    tool = osp.join(REPO_ROOT, 'tools', 'make_demo_data.py')
    code = ('import runpy, sys\n'
            f'sys.argv = [{tool!r}, {str(tmp_path / "out")!r}, *{SMALL!r}]\n'
            f'runpy.run_path({tool!r}, run_name="__main__")\n'
            'print(sorted(m for m in ("torch", "mmengine", "mdrl_plugin") '
            'if m in sys.modules))\n')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True, check=True).stdout
    assert out.splitlines()[-1] == '[]'
    assert len(json.load(open(tmp_path / 'out' / 'reid_raw.json'))) == 6

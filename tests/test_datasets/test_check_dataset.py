"""tools/check_dataset.py (the report is mdrl_plugin.datasets.checker), run
in-process (and once as a subprocess)."""
import importlib.util
import io
import os
import os.path as osp
import subprocess
import sys

import pytest

from mdrl_plugin.datasets.checker import check_dataset
from test_datasets._pedes_data import cuhk_records, icfg_records, write_dataset

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(REPO, 'tools', 'check_dataset.py')


@pytest.fixture(scope='module')
def tool():
    spec = importlib.util.spec_from_file_location('check_dataset_tool', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(tool, capsys, *argv):
    code = tool.main(list(argv))
    return code, capsys.readouterr().out


def test_healthy_dataset(tool, capsys, cuhk_root):
    code, out = run(tool, capsys, 'CUHKPEDES', cuhk_root, '--check-images')
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f'CUHK-PEDES (CUHKPEDES) at {cuhk_root}'
    ann = osp.join(cuhk_root, 'reid_raw.json')
    assert lines[1] == f'annotation file: {ann} (8 records)'
    assert 'record problems: none' in lines
    i = lines.index('split train: 3 identities, 4 images, 7 captions')
    assert lines[i + 1] == ('  images per identity: mean 1.33, min 1, '
                            'median 1, p95 2, max 2')
    assert lines[i + 2] == ('  captions per image: mean 1.75, min 1, '
                            'median 2, p95 2, max 2')
    assert lines[i + 3] == '  records with empty or blank captions: 0'
    # words: 6, 4, 5, 4, 3, 4, 5 -> mean 31/7; p95 is the nearest rank
    assert lines[i + 4] == ('  caption length (words): mean 4.43, min 3, '
                            'median 4, p95 6, max 6')
    assert lines[i + 5] == '  missing images: 0'
    assert lines[i + 6] == '  unreadable images: 0 (decoded 4)'
    assert lines[i + 7] == ('  image width: mean 6.00, min 6, median 6, '
                            'p95 6, max 6')
    assert 'split val: 1 identities, 1 images, 2 captions' in lines
    assert 'split test: 2 identities, 3 images, 5 captions' in lines
    assert lines[-1] == 'RESULT: usable'


def test_missing_and_corrupt_images(tool, capsys, cuhk_root):
    os.remove(osp.join(cuhk_root, 'imgs', 'test', '0007.png'))
    with open(osp.join(cuhk_root, 'imgs', 'CUHK01', '0002.png'), 'wb') as f:
        f.write(b'garbage')
    code, out = run(tool, capsys, 'CUHKPEDES', cuhk_root)
    assert code == 1  # the missing file alone makes it unusable
    assert '  missing images: 1 of 3: test/0007.png' in out.splitlines()
    assert 'unreadable' not in out  # not decoded without --check-images
    code, out = run(tool, capsys, 'CUHKPEDES', cuhk_root, '--check-images')
    assert code == 1
    lines = out.splitlines()
    assert '  unreadable images: 1 of 4: CUHK01/0002.png' in lines
    assert lines[-1] == (
        "RESULT: NOT usable: 1 unreadable images in split 'train'; "
        "1 missing images in split 'test'")


def test_record_problems_are_listed(tool, capsys, tmp_path):
    recs = cuhk_records()
    recs[1]['captions'] = ['  ']
    recs[3]['captions'] = ['Fine.', '']
    recs[6]['split'] = 'query'
    root = write_dataset(str(tmp_path / 'C'), 'reid_raw.json', recs)
    code, out = run(tool, capsys, 'CUHKPEDES', root, '--show', '2')
    assert code == 1
    lines = out.splitlines()
    i = lines.index('record problems: 3 (captions: 1, empty_caption: 1, '
                    'split: 1)')
    assert lines[i + 1] == ("  record 1 (file_path 'CUHK01/0002.png'): all 1 "
                            'captions are blank; expected at least one '
                            'non-empty caption')
    assert lines[i + 2] == ("  record 3 (file_path 'cam_a/0004.png'): 1 of 2 "
                            'captions are blank and 1 more')
    assert lines[i + 3] == 'split train: 2 identities, 3 images, 4 captions'
    # record 1 is dropped, record 3 keeps its non-blank caption
    j = lines.index('split train: 2 identities, 3 images, 4 captions')
    assert lines[j + 3] == '  records with empty or blank captions: 2'
    assert lines[-1] == 'RESULT: NOT usable: 3 record problems'


def test_icfg_splits_and_empty_split(tool, capsys, tmp_path):
    recs = [r for r in icfg_records() if r['split'] == 'train']
    root = write_dataset(str(tmp_path / 'I'), 'ICFG_PEDES.json', recs)
    code, out = run(tool, capsys, 'ICFGPEDES', root)
    assert code == 1
    assert 'split val' not in out  # ICFG-PEDES has no val split
    assert 'split test: no records' in out.splitlines()
    assert out.splitlines()[-1] == \
        "RESULT: NOT usable: split 'test' has no records"


def test_shared_identities_are_warned(tool, capsys, tmp_path):
    recs = cuhk_records()
    recs[7]['id'] = 5  # a test image of a training identity
    root = write_dataset(str(tmp_path / 'C'), 'reid_raw.json', recs)
    code, out = run(tool, capsys, 'CUHKPEDES', root)
    assert code == 0
    assert 'warning: splits train and test share 1 identities and 0 images' \
        in out.splitlines()


def test_unusable_root_and_json(tool, capsys, tmp_path, cuhk_root):
    code, out = run(tool, capsys, 'RSTPReid', str(tmp_path / 'none'))
    assert code == 1
    assert out.splitlines()[1] == (
        f"ERROR: RSTPReid: data_root '{tmp_path / 'none'}' does not exist; "
        'expected the dataset folder that holds imgs/ and the annotation '
        'JSON.')
    with open(osp.join(cuhk_root, 'reid_raw.json'), 'w') as f:
        f.write('[{"split": "train"')
    code, out = run(tool, capsys, 'CUHKPEDES', cuhk_root)
    assert code == 1
    assert 'malformed JSON at line 1, column 19' in out
    assert out.splitlines()[-1] == 'RESULT: NOT usable (see the error above)'
    code, out = run(tool, capsys, 'CUHKPEDES', cuhk_root, '--ann-file',
                    'missing.json')
    assert code == 1 and 'missing.json' in out


def test_bad_arguments(tool, capsys, cuhk_root):
    with pytest.raises(SystemExit) as exc:
        tool.main(['NOPE', cuhk_root])
    assert exc.value.code == 2
    assert "invalid choice: 'NOPE'" in capsys.readouterr().err
    assert tool.main(['CUHKPEDES', cuhk_root, '--show', '0']) == 2


def test_as_a_script_exit_status(cuhk_root):
    os.remove(osp.join(cuhk_root, 'imgs', 'cam_a', '0004.png'))
    env = dict(os.environ, PYTHONPATH=REPO)
    bad = subprocess.run([sys.executable, TOOL, 'CUHKPEDES', cuhk_root],
                         capture_output=True, text=True, env=env, cwd=REPO)
    assert bad.returncode == 1, bad.stderr
    assert bad.stdout.splitlines()[-1] == (
        "RESULT: NOT usable: 1 missing images in split 'train'")


def test_report_goes_to_the_given_stream(cuhk_root, capsys):
    buf = io.StringIO()
    assert check_dataset('CUHKPEDES', cuhk_root, check_images=True,
                         out=buf) == 0
    assert buf.getvalue().splitlines()[-2:] == [
        '  image height: mean 12.00, min 12, median 12, p95 12, max 12',
        'RESULT: usable']
    assert capsys.readouterr().out == ''

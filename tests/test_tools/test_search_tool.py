"""tools/search.py end to end: in a subprocess once (the command line works
and warns of nothing), then its ``main`` in this process."""
import json
import os
import os.path as osp
import re
import subprocess
import sys

import pytest

from test_apis.search_testdata import pid_of, write_gallery, write_model

pytestmark = pytest.mark.slow  # a tools/search.py process

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(REPO, 'tools', 'search.py')
PNG = b'\x89PNG\r\n\x1a\n'


def run_tool(*args, cwd):
    env = dict(os.environ, HF_HUB_OFFLINE='1', TRANSFORMERS_OFFLINE='1',
               OMP_NUM_THREADS='1')
    return subprocess.run([sys.executable, TOOL, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope='module')
def tool_env(tiny_bert_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp('search_tool')
    model = write_model(str(root / 'model'), tiny_bert_dir)
    # a dataset folder: imgs/ + the search labels {path in imgs/: pid}
    data = root / 'data'
    paths = write_gallery(str(data / 'imgs'), num=8)
    (data / 'labels.json').write_text(json.dumps(
        {osp.relpath(p, data / 'imgs'): pid_of(p) for p in paths}))
    from mdrl_plugin.apis import PersonSearcher
    searcher = PersonSearcher(model['config'], model['checkpoint'],
                              progress=False)
    searcher.build_index(str(data / 'imgs'))
    index = searcher.save_index(str(root / 'prebuilt_index'))
    return dict(root=root, data=data, paths=paths, index=index, **model)


ROW = re.compile(r'^\s+(\d+)\s+(-?\d\.\d{4})\s+(\S+)\s+(?:(yes|no|-)\s+)?'
                 r'(\S+)$')


def rows(stdout):
    return [ROW.match(line).groups() for line in stdout.splitlines()
            if ROW.match(line)]


def test_folder_search_prints_ranks_and_writes_png(tool_env):
    root = tool_env['root']
    out = root / 'res.png'
    index = root / 'gallery_index'
    r = run_tool(tool_env['config'], tool_env['checkpoint'],
                 '--gallery', str(tool_env['data'] / 'imgs'),
                 '--query', 'a man in a red shirt', '--topk', '5',
                 '--save-index', str(index), '--out', str(out),
                 '--no-progress', cwd=str(root))
    assert r.returncode == 0, r.stderr
    assert 'warning' not in r.stderr
    assert 'Query 1: a man in a red shirt' in r.stdout
    found = rows(r.stdout)
    assert [int(f[0]) for f in found] == [1, 2, 3, 4, 5]
    scores = [float(f[1]) for f in found]
    assert scores == sorted(scores, reverse=True)
    assert {f[2] for f in found} == {'-'}  # no labels given
    assert all(f[4] in tool_env['paths'] for f in found)
    assert out.read_bytes()[:8] == PNG
    assert (index / 'meta.json').is_file()
    assert f'Saved the index of 8 images to {index}' in r.stderr


def test_index_with_labels_marks_matches(tool_env, run):
    root = tool_env['root']
    out = root / 'sub' / 'labelled.png'
    status, stdout, stderr = run(
        'search', tool_env['config'], tool_env['checkpoint'],
        '--gallery', tool_env['index'],
        '--labels', tool_env['data'] / 'labels.json',
        '--query', 'a man in a red shirt', '--query',
        'a woman with a blue bag', '--query-pid', '2',
        '--topk', '20', '--out', out)
    assert status == 0, stderr
    assert 'Loaded index' in stderr
    found = rows(stdout)
    assert len(found) == 16  # topk > gallery: all 8 images per query
    for rank, score, label, match, path in found:
        assert int(label) == pid_of(path)
        assert match == ('yes' if pid_of(path) == 2 else 'no')
    assert 'Query 2: a woman with a blue bag  [pid 2]' in stdout
    assert out.read_bytes()[:8] == PNG


def test_input_errors_exit_2_with_a_message(tool_env, tiny_bert_dir, run):
    root = tool_env['root']
    status, _, stderr = run(
        'search', tool_env['config'], tool_env['checkpoint'],
        '--gallery', tool_env['data'] / 'imgs',
        '--query', '   ', '--out', 'none', '--no-progress')
    assert status == 2
    assert 'error: Query texts[0] is empty' in stderr
    assert 'Traceback' not in stderr
    other = write_model(str(root / 'other'), tiny_bert_dir, seed=1,
                        name='other')
    status, _, stderr = run('search', other['config'], other['checkpoint'],
                            '--gallery', tool_env['index'], '--query',
                            'a man', '--out', 'none')
    assert status == 2
    assert 'was made by another model; it differs in checkpoint' in stderr
    assert 'Traceback' not in stderr


def test_cfg_options_override_the_config(tool_env, run):
    status, _, stderr = run(
        'search', tool_env['config'], tool_env['checkpoint'],
        '--gallery', tool_env['index'], '--query', 'a man in a red shirt',
        '--out', 'none',
        '--cfg-options', 'model.data_preprocessor.max_length=6')
    # the override changes the model config: the saved index is refused
    assert status == 2
    assert 'differs in model config and test pipeline' in stderr
    status, stdout, stderr = run(
        'search', tool_env['config'], tool_env['checkpoint'],
        '--gallery', tool_env['data'] / 'imgs', '--query',
        'a man in a red shirt', '--out', 'none', '--topk', '2',
        '--no-progress',
        '--cfg-options', 'model.data_preprocessor.max_length=6')
    assert status == 0, stderr
    assert ('warning: Query texts[0] has 8 tokens '
            'but the model reads at most 6') in stderr
    assert len(rows(stdout)) == 2

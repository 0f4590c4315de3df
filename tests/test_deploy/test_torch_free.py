"""The ONNX search path runs where importing torch or mmengine fails."""
import glob
import json
import os
import os.path as osp
import subprocess
import sys
import textwrap

import pytest

from mdrl_plugin.apis import PersonSearcher

from .serving import BLOCKER
from mdrl_test_utils import REPO_ROOT

QUERIES = ['a man in a red shirt', 'a woman with a blue bag']

CHILD = BLOCKER + textwrap.dedent('''
    import json, sys, warnings
    try:
        import torch  # noqa: F401
        raise SystemExit('the blocker did not block torch')
    except ImportError:
        pass
    from mdrl_deploy import OrtSearcher
    export, gallery, index_out, torch_index, queries, backend = sys.argv[1:7]
    queries = json.loads(queries)
    s = OrtSearcher(export, num_threads=1, image_backend=backend)
    s.build_index(gallery)
    s.save_index(index_out)
    built = [[h.path for h in q] for q in s.search(queries, topk=10)]
    s.load_index(torch_index)   # an index written by PersonSearcher
    loaded = [[h.path for h in q] for q in s.search(queries, topk=10)]
    from mdrl_deploy.server import create_app  # the server too
    create_app(s)
    # labels files: JSON objects are read, PEDES lists refused
    import os
    labels = os.path.join(os.path.dirname(index_out), 'labels.json')
    with open(labels, 'w') as f:
        json.dump({p: i for i, p in enumerate(s.index.paths)}, f)
    s.set_labels(labels)
    with open(labels, 'w') as f:
        json.dump([{'file_path': s.index.paths[0], 'id': 1}], f)
    try:
        s.set_labels(labels)
        pedes = None
    except ValueError as err:
        pedes = str(err)
    bad = sorted(m for m in sys.modules
                 if m.split('.')[0] in ('torch', 'mmengine', 'mdrl_plugin'))
    print(json.dumps(dict(built=built, loaded=loaded, bad=bad,
                          labels=s.index.labels, pedes=pedes)))
''')


def run_child(deploy_model, gallery, tmp_path, torch_index, backend):
    out = str(tmp_path / f'ort_{backend}_index')
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, OMP_NUM_THREADS='1')
    proc = subprocess.run(
        [sys.executable, '-c', CHILD, deploy_model['export'], gallery, out,
         torch_index, json.dumps(QUERIES), backend],
        capture_output=True, text=True, env=env, cwd=str(tmp_path),
        timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), out


def test_search_without_torch_matches_person_searcher(deploy_model,
                                                      deploy_gallery,
                                                      tmp_path):
    torch_s = PersonSearcher(deploy_model['config'], deploy_model['checkpoint'],
                             progress=False)
    torch_s.build_index(deploy_gallery)
    torch_index = torch_s.save_index(str(tmp_path / 'torch_index'))
    expected = [[h.path for h in q] for q in torch_s.search(QUERIES, topk=10)]

    for backend in ('cv2', 'pillow'):
        result, ort_index = run_child(deploy_model, deploy_gallery, tmp_path,
                                      torch_index, backend)
        assert result['bad'] == []
        assert result['labels'] == list(range(10))
        assert 'holds a JSON list; expected an object {"image path": ' \
            'identity}' in result['pedes']
        assert result['built'] == expected, backend
        assert result['loaded'] == expected, backend
        # PersonSearcher reads the index written without torch
        torch_s.load_index(ort_index)
        assert [[h.path for h in q] for q in
                torch_s.search(QUERIES, topk=10)] == expected
        assert torch_s.index.fingerprint['encoder'] == 'onnxruntime'


def test_blocker_really_blocks(tmp_path):
    proc = subprocess.run(
        [sys.executable, '-c', BLOCKER + 'import mmengine'],
        capture_output=True, text=True, cwd=str(tmp_path))
    assert proc.returncode != 0 and 'mmengine is blocked' in proc.stderr



MODULES = ['mdrl_deploy'] + sorted(
    'mdrl_deploy.' + osp.splitext(osp.basename(f))[0]
    for f in glob.glob(osp.join(REPO_ROOT, 'mdrl_deploy', '*.py'))
    if not f.endswith('__init__.py'))
LAYER_BLOCKED = ('mdrl_plugin', 'torch', 'mmengine', 'mmcv', 'transformers',
                 'torchvision', 'timm')


def test_every_module_is_listed():
    assert {'mdrl_deploy', 'mdrl_deploy.search', 'mdrl_deploy.server',
            'mdrl_deploy.utils'} <= set(MODULES)


@pytest.mark.parametrize('module', MODULES)
def test_every_module_imports_without_torch_or_the_plugin(module, tmp_path):
    """The layering: each mdrl_deploy module imports in a fresh interpreter
    where importing torch, MMEngine or mdrl_plugin raises, and no import
    statement of it, at any depth (a lazy one in a function too), names
    them."""
    import ast
    path = osp.join(REPO_ROOT, *module.split('.'))
    path = osp.join(path, '__init__.py') if osp.isdir(path) else path + '.py'
    with open(path, encoding='utf-8') as f:
        tree = ast.parse(f.read())
    imported = [alias.name for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names] + [
        node.module for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and
        not node.level]
    assert [m for m in imported if m.split('.')[0] in LAYER_BLOCKED] == []
    code = BLOCKER + textwrap.dedent(f'''
        import importlib
        importlib.import_module({module!r})
        print(sorted(m for m in sys.modules if m.split('.')[0] in BLOCKED))
    ''')
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True,
                          text=True, cwd=str(tmp_path), timeout=120,
                          env=dict(os.environ, PYTHONPATH=REPO_ROOT))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == '[]'

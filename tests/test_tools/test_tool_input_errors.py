"""User mistakes through the tools' real entry points (subprocesses).

Each mistake must give one paragraph on stderr, a non-zero exit status and no
traceback (unless ``--debug``), and input mistakes must be found before any
model is built or image encoded.
"""
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

from mdrl_test_utils import REPO_ROOT, shrink_config

TOOLS = osp.join(REPO_ROOT, 'tools')
DEMO = osp.join(REPO_ROOT, 'configs', 'mdrl_demo.py')


def tool(name, *args, cwd):
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, OMP_NUM_THREADS='1',
               HF_HUB_OFFLINE='1', TRANSFORMERS_OFFLINE='1')
    return subprocess.run(
        [sys.executable, osp.join(TOOLS, f'{name}.py'), *map(str, args)],
        cwd=str(cwd), env=env, capture_output=True, text=True, timeout=600)


def user_error(proc, status, *fragments):
    """Assert a one-paragraph error with the given exit status."""
    assert proc.returncode == status, proc.stderr[-3000:]
    assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    for fragment in fragments:
        assert fragment in proc.stderr, proc.stderr[-3000:]


@pytest.fixture(scope='module')
def tiny(tiny_bert_dir, tiny_pedes_root, tmp_path_factory):
    """The demo config made tiny, its checkpoint, and a mismatched one."""
    from mmengine.config import Config

    import mdrl_plugin  # noqa: F401
    from mdrl_plugin.registry import MODELS
    root = tmp_path_factory.mktemp('tool_errors')
    cfg = Config.fromfile(DEMO)
    shrink_config(cfg, tiny_bert_dir, tiny_pedes_root)
    config = str(root / 'tiny_mdrl.py')
    cfg.dump(config)
    torch.manual_seed(0)
    state_dict = MODELS.build(cfg.model).state_dict()
    qkv = next(k for k in state_dict if k.endswith('attn.qkv.weight'))
    other = dict(state_dict)
    rows, cols = state_dict[qkv].shape
    other[qkv] = torch.zeros(rows + 3, cols)  # a slightly different config
    mismatched = str(root / 'other_config.pth')
    torch.save({'meta': {}, 'state_dict': other}, mismatched)
    text = root / 'notes.pth'
    text.write_text('these are my notes, not weights\n')
    return dict(root=root, config=config, qkv=qkv, shape=(rows, cols),
                mismatched=mismatched, text=str(text))


def test_train_checks_its_inputs_before_building(tiny, tmp_path):
    # the shipped demo config without its data: no model is built (its BERT
    # folder does not exist here either)
    p = tool('train', DEMO, '--work-dir', tmp_path / 'w', cwd=tmp_path)
    user_error(p, 2, "tools/train.py: error: train_dataloader.dataset."
               "data_root 'data/demo' does not exist",
               'tools/make_demo_data.py')
    p = tool('train', tiny['config'], '--work-dir', tmp_path / 'w',
             '--cfg-options', f"load_from={tiny['text']}", cwd=tmp_path)
    user_error(p, 2, f"Could not load checkpoint '{tiny['text']}': it is "
               'not a PyTorch checkpoint')
    a_file = tmp_path / 'a_file'
    a_file.write_text('x')
    p = tool('train', tiny['config'], '--work-dir', a_file, cwd=tmp_path)
    user_error(p, 2, f"work dir '{a_file}' is a file, not a folder.")


def test_train_num_classes_mismatch_without_traceback(tiny, tmp_path):
    args = [tiny['config'], '--work-dir', tmp_path / 'w', '--cfg-options',
            'model.num_classes=200']
    p = tool('train', *args, cwd=tmp_path)
    user_error(p, 1, 'tools/train.py: error: model.num_classes=200 but the '
               'training dataset', 'has 6 identities: set '
               'model.num_classes=6')
    p = tool('train', *args, '--debug', cwd=tmp_path)
    assert p.returncode == 1
    assert 'Traceback' in p.stderr and 'NumClassesMismatchError' in p.stderr


def test_test_refuses_a_mismatched_or_non_checkpoint(tiny, tmp_path):
    p = tool('test', tiny['config'], tiny['text'], '--work-dir',
             tmp_path / 't', cwd=tmp_path)
    user_error(p, 2, f"tools/test.py: error: Could not load checkpoint "
               f"'{tiny['text']}': it is not a PyTorch checkpoint")
    assert 'safe loader' not in p.stderr
    rows, cols = tiny['shape']
    p = tool('test', tiny['config'], tiny['mismatched'], '--work-dir',
             tmp_path / 't', cwd=tmp_path)
    user_error(p, 1, f"tools/test.py: error: Checkpoint "
               f"'{tiny['mismatched']}' does not fit the model of config",
               f"1 weight(s) of another shape ({tiny['qkv']}: checkpoint "
               f'({rows + 3}, {cols}) vs model ({rows}, {cols}))',
               '0 missing key(s), 0 unexpected key(s)',
               'written for another config', '--allow-partial-checkpoint')
    out = tmp_path / 'm.json'
    p = tool('test', tiny['config'], tiny['mismatched'], '--work-dir',
             tmp_path / 't', '--allow-partial-checkpoint', '--out', out,
             cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    assert (f"1 model weight(s) left uninitialised: {tiny['qkv']}"
            in p.stdout + p.stderr)
    assert out.is_file()


def test_search_checks_everything_before_encoding(tiny, tmp_path):
    gallery = tmp_path / 'gallery'
    gallery.mkdir()
    p = tool('search', tiny['config'], tiny['text'], '--gallery', gallery,
             '--query', 'a man', cwd=tmp_path)
    user_error(p, 2, f"Could not load checkpoint '{tiny['text']}': it is "
               'not a PyTorch checkpoint')
    p = tool('search', tiny['config'], tiny['mismatched'], '--gallery',
             tmp_path / 'nowhere', '--query', 'a man', cwd=tmp_path)
    user_error(p, 2, f"--gallery '{tmp_path / 'nowhere'}' does not exist")
    p = tool('search', tiny['config'], tiny['mismatched'], '--gallery',
             gallery, '--query', 'a man', '--query', ' ', cwd=tmp_path)
    user_error(p, 2, 'tools/search.py: error: Query texts[1] is empty')
    assert 'Encoding' not in p.stderr
    p = tool('search', tiny['config'], tiny['mismatched'], '--gallery',
             gallery, '--query', 'a man', cwd=tmp_path)
    user_error(p, 2, f"Checkpoint '{tiny['mismatched']}' does not fit the "
               f"model of config", tiny['qkv'])
    assert 'Encoding' not in p.stderr


def test_check_dataset_reports_a_missing_root(tmp_path):
    p = tool('check_dataset', 'CUHKPEDES', tmp_path / 'nowhere', cwd=tmp_path)
    assert p.returncode == 1 and 'Traceback' not in p.stderr
    assert "data_root '" in p.stdout and 'does not exist' in p.stdout
    assert p.stdout.rstrip().endswith(
        'RESULT: NOT usable (see the error above)')

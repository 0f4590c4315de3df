"""User mistakes through the tools' entry points.

Each mistake must give one paragraph on stderr, a non-zero exit status and no
traceback (unless ``--debug``), and input mistakes must be found before any
model is built or image encoded. The tools' ``main(argv)`` runs in this
process (conftest's ``run``: ``main`` returning a status means no exception
escaped); one subprocess shows that the real entry point prints no traceback
either.
"""
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

from mdrl_test_utils import REPO_ROOT, shrink_config

pytestmark = pytest.mark.slow  # a tools/test.py process

TOOLS = osp.join(REPO_ROOT, 'tools')
DEMO = osp.join(REPO_ROOT, 'configs', 'mdrl_demo.py')


def user_error(result, status, *fragments):
    """Assert a one-paragraph error with the given exit status."""
    code, _, err = result
    assert code == status, err[-3000:]
    assert 'Traceback' not in err, err[-3000:]
    for fragment in fragments:
        assert fragment in err, err[-3000:]


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
    # PyTorch's words for the wrong-shaped weight
    report = (f'size mismatch for {qkv}: copying a param with shape '
              f'torch.Size([{rows + 3}, {cols}]) from checkpoint, the shape '
              f'in current model is torch.Size([{rows}, {cols}]).')
    return dict(root=root, config=config, qkv=qkv, report=report,
                mismatched=mismatched, text=str(text))


def test_train_checks_its_inputs_before_building(tiny, tmp_path, run):
    # the shipped demo config without its data: no model is built (its BERT
    # folder does not exist here either)
    user_error(run('train', DEMO, '--work-dir', tmp_path / 'w'), 2,
               "tools/train.py: error: train_dataloader.dataset."
               "data_root 'data/demo' does not exist",
               'tools/make_demo_data.py')
    user_error(run('train', tiny['config'], '--work-dir', tmp_path / 'w',
                   '--cfg-options', f"load_from={tiny['text']}"), 2,
               f"Could not load checkpoint '{tiny['text']}': it is not a "
               'PyTorch checkpoint')
    a_file = tmp_path / 'a_file'
    a_file.write_text('x')
    user_error(run('train', tiny['config'], '--work-dir', a_file), 2,
               f"work dir '{a_file}' is a file, not a folder.")
    assert not (tmp_path / 'w').exists()  # nothing was built


def test_train_num_classes_mismatch_without_traceback(tiny, tmp_path, run):
    from mdrl_plugin.engine import NumClassesMismatchError
    args = [tiny['config'], '--work-dir', tmp_path / 'w', '--cfg-options',
            'model.num_classes=200']
    user_error(run('train', *args), 1, 'tools/train.py: error: '
               'model.num_classes=200 but the training dataset',
               'has 6 identities: set model.num_classes=6')
    with pytest.raises(NumClassesMismatchError):  # --debug: the traceback
        run('train', *args, '--debug')


def test_test_refuses_a_mismatched_or_non_checkpoint(tiny, tmp_path, run):
    result = run('test', tiny['config'], tiny['text'], '--work-dir',
                 tmp_path / 't')
    user_error(result, 2, "tools/test.py: error: Could not load checkpoint "
               f"'{tiny['text']}': it is not a PyTorch checkpoint")
    assert 'safe loader' not in result[2]
    user_error(run('test', tiny['config'], tiny['mismatched'], '--work-dir',
                   tmp_path / 't'), 1,
               f"tools/test.py: error: Checkpoint '{tiny['mismatched']}' "
               'does not fit the model of config', tiny['report'],
               'written for another config', '--allow-partial-checkpoint')
    out = tmp_path / 'm.json'
    status, stdout, stderr = run(
        'test', tiny['config'], tiny['mismatched'], '--work-dir',
        tmp_path / 't', '--allow-partial-checkpoint', '--out', out)
    assert status == 0, stderr[-3000:]
    # MMEngine's own report of what was left at its initialisation
    assert tiny['report'] in stdout + stderr
    assert out.is_file()


def test_the_real_entry_point_prints_no_traceback(tiny, tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, OMP_NUM_THREADS='1',
               HF_HUB_OFFLINE='1', TRANSFORMERS_OFFLINE='1')
    proc = subprocess.run(
        [sys.executable, osp.join(TOOLS, 'test.py'), tiny['config'],
         tiny['mismatched'], '--work-dir', str(tmp_path / 't')],
        cwd=str(tmp_path), env=env, capture_output=True, text=True,
        timeout=600)
    user_error((proc.returncode, proc.stdout, proc.stderr), 1,
               f"tools/test.py: error: Checkpoint '{tiny['mismatched']}' "
               'does not fit the model of config', tiny['report'])


def test_search_checks_everything_before_encoding(tiny, tmp_path, run):
    gallery = tmp_path / 'gallery'
    gallery.mkdir()
    user_error(run('search', tiny['config'], tiny['text'], '--gallery',
                   gallery, '--query', 'a man'), 2,
               f"Could not load checkpoint '{tiny['text']}': it is not a "
               'PyTorch checkpoint')
    user_error(run('search', tiny['config'], tiny['mismatched'], '--gallery',
                   tmp_path / 'nowhere', '--query', 'a man'), 2,
               f"--gallery '{tmp_path / 'nowhere'}' does not exist")
    result = run('search', tiny['config'], tiny['mismatched'], '--gallery',
                 gallery, '--query', 'a man', '--query', ' ')
    user_error(result, 2, 'tools/search.py: error: Query texts[1] is empty')
    assert 'Encoding' not in result[2]
    result = run('search', tiny['config'], tiny['mismatched'], '--gallery',
                 gallery, '--query', 'a man')
    user_error(result, 2, f"Checkpoint '{tiny['mismatched']}' does not fit "
               'the model of config', tiny['qkv'])
    assert 'Encoding' not in result[2]


def test_check_dataset_reports_a_missing_root(tmp_path, run):
    status, out, err = run('check_dataset', 'CUHKPEDES', tmp_path / 'nowhere')
    assert status == 1 and 'Traceback' not in err
    assert "data_root '" in out and 'does not exist' in out
    assert out.rstrip().endswith('RESULT: NOT usable (see the error above)')

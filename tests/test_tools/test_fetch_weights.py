"""Weights through the tools: train/test stop at once on missing weights
(their ``main`` in this process), and tools/fetch_weights.py reports what it
finds and fetches (offline here; its command line in a subprocess)."""
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

from mdrl_test_utils import REPO_ROOT, folder_files, put_in_hub_cache, write_tiny_bert

CUHK = osp.join(REPO_ROOT, 'configs', 'mdrl_vit_bert_cuhk.py')
VIT = 'vit_base_patch16_224.orig_in21k_ft_in1k'


@pytest.fixture
def cwd(tmp_path):
    """A working folder with an (empty) data root for the CUHK-PEDES config."""
    os.makedirs(tmp_path / 'work' / 'data' / 'CUHK-PEDES')
    return tmp_path / 'work'


def tool(name, *args, cwd, hf_home):
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, OMP_NUM_THREADS='1',
               HF_HOME=str(hf_home), TORCH_HOME=str(hf_home / 'torch'),
               HF_HUB_OFFLINE='1')
    env.pop('HF_HUB_CACHE', None)
    return subprocess.run(
        [sys.executable, osp.join(REPO_ROOT, 'tools', f'{name}.py'),
         *map(str, args)], cwd=str(cwd), env=env, capture_output=True,
        text=True, timeout=600)


@pytest.mark.parametrize('name', ['train', 'test'])
def test_tools_stop_before_any_work_with_one_message(name, offline_hub,
                                                     tmp_path, run):
    os.makedirs(tmp_path / 'data' / 'CUHK-PEDES')  # the config's data root
    args = [CUHK, '--work-dir', tmp_path / 'w']
    if name == 'test':
        torch.save({'state_dict': {}}, tmp_path / 'ckpt.pth')
        args.insert(1, tmp_path / 'ckpt.pth')
    status, _, err = run(name, *args)  # conftest: main() in this process
    assert status == 2, err[-3000:]
    lines = err.splitlines()
    assert lines[0] == (f'tools/{name}.py: error: 3 pretrained weight(s) of '
                        f'{CUHK} missing (offline: HF_HUB_OFFLINE=1):'), err
    assert [ln.split(' (')[0] for ln in lines[1:4]] == [
        '  - tokenizer', '  - image encoder', '  - text encoder']
    assert f'{offline_hub}/models--bert-base-uncased' in lines[1]
    assert lines[4].endswith(f'python tools/fetch_weights.py {CUHK}')
    assert len(lines) == 5 and not os.path.exists(tmp_path / 'w'), err


def test_fetch_weights_reports_what_is_here_and_what_is_not(cwd, tmp_path):
    hf_home = tmp_path / 'hf'
    bert = write_tiny_bert(str(tmp_path / 'bert'))
    snapshot = put_in_hub_cache(str(hf_home / 'hub'), 'bert-base-uncased',
                                folder_files(bert))
    p = tool('fetch_weights', CUHK, cwd=cwd, hf_home=hf_home)
    assert p.returncode == 1, p.stderr
    assert p.stdout.splitlines() == [
        f'{CUHK}: 3 pretrained weight(s)',
        f"  tokenizer 'bert-base-uncased': already here: {snapshot}",
        f"  image encoder '{VIT}': not cached, and HF_HUB_OFFLINE is set: "
        'unset it to download',
        f"  text encoder 'bert-base-uncased': already here: {snapshot}"]

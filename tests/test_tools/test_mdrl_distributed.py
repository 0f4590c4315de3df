"""The real (tiny) MDRL through the torchrun scripts on this CPU machine: a
2-process training with cross-rank matching (gloo), and a 2-process
evaluation that must give exactly the metrics of tools/test.py in one
process (run in this one) on a test set of odd size."""
import glob
import json
import os
import os.path as osp
import socket
import subprocess
import sys
import uuid

import pytest
import torch
from mmengine.config import Config

from mdrl_plugin.engine import safe_torch_load

from mdrl_test_utils import REPO_ROOT, shrink_config

pytestmark = pytest.mark.slow  # torchrun, 2 x 3 processes


def _free_port() -> str:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return str(s.getsockname()[1])


def _run(args, **env):
    full_env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS='1', **env)
    proc = subprocess.run(args, cwd=REPO_ROOT, env=full_env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, f'{args}:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}'
    return proc


def test_two_process_training_and_evaluation(tiny_bert_dir, tiny_pedes_root, tmp_path,
                                             run):
    # the SDM config gathers features across ranks for the matching loss
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs', 'mdrl_vit_bert_sdm_cuhk.py'))
    assert cfg.model.matching_loss.gather_across_ranks
    shrink_config(cfg, tiny_bert_dir, tiny_pedes_root)
    cfg.randomness = dict(seed=0, deterministic=True)
    cfg_file = str(tmp_path / 'tiny_sdm.py')
    cfg.dump(cfg_file)
    work = str(tmp_path / 'work')

    _run(['bash', 'tools/dist_train.sh', cfg_file, '2', '--work-dir', work],
         PORT=_free_port())
    log = open(glob.glob(osp.join(work, '*', '*.log'))[0]).read()
    assert 'Distributed training: True' in log
    assert "dist_cfg: {'backend': 'gloo'}" in log
    ckpt = osp.join(work, 'iter_2.pth')
    assert safe_torch_load(ckpt)['meta']['iter'] == 2

    _run(['bash', 'tools/dist_test.sh', cfg_file, ckpt, '2', '--work-dir', work,
          '--out', str(tmp_path / 'two.json')], PORT=_free_port())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each rank (OMP_NUM_THREADS=1)
    try:
        status, _, err = run('test', cfg_file, ckpt, '--work-dir', work, '--out',
                             tmp_path / 'one.json', '--cfg-options',
                             f'experiment_name=t{uuid.uuid4().hex}')
    finally:
        torch.set_num_threads(threads)
    assert status == 0, err[-5000:]
    two = json.load(open(tmp_path / 'two.json'))
    one = json.load(open(tmp_path / 'one.json'))
    assert set(one) == {'R1', 'R5', 'R10', 'mAP', 'mINP'}
    # 9 test images over 2 ranks: one rank gets a padded duplicate, which the
    # metric's collection drops; any lost or doubled image would change mAP
    assert two == one

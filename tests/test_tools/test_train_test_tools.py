"""tools/train.py and tools/test.py on the toy config, their ``main`` in
this process. Their command lines, killed and resumed: test_mdrl_crash_resume.py;
the torchrun scripts: test_mdrl_distributed.py.
"""
import gc
import glob
import json
import os
import os.path as osp
import socket
import uuid
from unittest import mock

import pytest
import torch
from mmengine.config import Config

from mdrl_plugin.engine import safe_torch_load

from toy_helpers import (
    TOY_ITER_CONFIG,
    load_tool,
    make_toy_cfg,
    preserved_global_state,
    run_toy,
)


@pytest.fixture(autouse=True)
def _restore_global_state():
    with preserved_global_state():
        yield


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return str(s.getsockname()[1])


def _scalars(work_dir):
    """Logged scalars of every run in ``work_dir``, oldest run first."""
    runs = sorted(glob.glob(osp.join(str(work_dir), '*', 'vis_data',
                                     'scalars.json')))
    return [[json.loads(line) for line in open(path)] for path in runs]


def _last_val(work_dir):
    entries = [e for e in _scalars(work_dir)[-1] if 'toy/score_sum' in e]
    return {k: v for k, v in entries[-1].items() if k.startswith('toy/')}


def _exp():
    return f'experiment_name=t{uuid.uuid4().hex}'


# ------------------------------------------------------------ error paths
def test_train_reports_a_bad_config_or_resume_path(tmp_path, capsys):
    train = load_tool('train')
    missing = str(tmp_path / 'missing.py')
    assert train.main([missing]) == 2  # MMEngine's Config.fromfile checks
    assert capsys.readouterr().err == (
        f"tools/train.py: error: [Errno 2] No such file or directory: "
        f"'{missing}'\n")
    bad = tmp_path / 'cfg.txt'
    bad.write_text('a = 1')
    assert train.main([str(bad)]) == 2  # MMEngine's message names no file
    assert capsys.readouterr().err == (
        f'tools/train.py: error: config {bad}: Only py/yml/yaml/json type '
        'are supported now!\n')
    bad = tmp_path / 'cfg.py'
    bad.write_text('a = dict(\n')
    assert train.main([str(bad)]) == 2
    assert capsys.readouterr().err.startswith(
        f"tools/train.py: error: config {bad}: '(' was never closed")
    for option, error in (('custom_hooks.99.x=1', 'KeyError'),
                          ('train_cfg.max_iters.x=1', 'TypeError')):
        assert train.main([TOY_ITER_CONFIG, '--cfg-options', option]) == 2
        err = capsys.readouterr().err
        assert err.startswith(
            f"tools/train.py: error: --cfg-options: cannot apply "
            f"{{'{option[:-2]}': 1}} to {TOY_ITER_CONFIG} ({error}: "), err
        assert err.endswith("a key follows the config's nesting: dicts by "
                            'name, lists by index.\n')
    clean = {k: v for k, v in os.environ.items() if not k.startswith('SLURM')}
    with mock.patch.dict(os.environ, clean, clear=True):
        assert train.main([TOY_ITER_CONFIG, '--work-dir', str(tmp_path / 'w'),
                           '--launcher', 'slurm']) == 2
    assert capsys.readouterr().err.startswith(
        'tools/train.py: error: --launcher slurm needs the environment '
        'variables SLURM_PROCID, SLURM_NTASKS, SLURM_NODELIST, which are not '
        'set.')
    ckpt = str(tmp_path / 'nope.pth')
    assert train.main([TOY_ITER_CONFIG, '--work-dir', str(tmp_path / 'w'),
                       '--resume', ckpt]) == 2
    assert capsys.readouterr().err == (
        f"tools/train.py: error: resume checkpoint '{ckpt}' does not "
        'exist.\n')


def _fake_ckpt(path, tag):
    torch.save({'tag': tag}, str(path))
    return str(path)


def test_resume_without_a_path_finds_the_last_complete_checkpoint(tmp_path):
    train = load_tool('train')
    work = tmp_path / 'work'
    work.mkdir()
    pretrained = _fake_ckpt(tmp_path / 'pretrained.pth', 0)

    def prepare(*argv):
        cfg = Config(dict(work_dir=str(work), load_from=pretrained,
                          resume=False))
        train.prepare(cfg, train.parse_args(['x.py', *argv]))
        return cfg.resume, cfg.load_from

    assert train.last_checkpoint(str(work)) is None
    assert train.last_checkpoint(str(tmp_path / 'absent')) is None
    # nothing to resume yet: start afresh, keep the initialisation
    assert prepare('--resume') == (False, pretrained)
    old = _fake_ckpt(work / 'iter_2.pth', 2)
    new = _fake_ckpt(work / 'iter_4.pth', 4)
    os.utime(old, ns=(1_000_000_000, 1_000_000_000))
    os.utime(new, ns=(2_000_000_000, 2_000_000_000))
    pointer = work / 'last_checkpoint'
    # no pointer: newest complete file
    assert prepare('--resume') == (True, new)
    # a good pointer wins (even if it is not the newest)
    pointer.write_text(old)
    assert prepare('--resume') == (True, old)
    # an empty pointer (MMEngine writes it in place: a kill can cut it)
    pointer.write_text('')
    assert train.last_checkpoint(str(work)) == new
    # a pointer to a truncated newest file: fall back to the older one
    with open(new, 'rb') as f:
        data = f.read()
    with open(new, 'wb') as f:
        f.write(data[:20])
    pointer.write_text(new)
    assert train.last_checkpoint(str(work)) == old
    # a truncated pointer that names no file
    pointer.write_text(old[:-3])
    assert train.last_checkpoint(str(work)) == old
    # temp files of the atomic backend and other files are ignored
    (work / '.iter_6.pth.host.123.abcdef12.tmp').write_bytes(b'x')
    (work / 'notes.pth').write_bytes(b'x')
    assert train.last_checkpoint(str(work)) == old
    # an explicit path resumes from it
    assert prepare('--resume', new) == (True, new)


def test_test_reports_a_missing_checkpoint_or_bad_out(tmp_path, capsys):
    test = load_tool('test')
    ckpt = str(tmp_path / 'nope.pth')
    assert test.main([TOY_ITER_CONFIG, ckpt]) == 2
    assert capsys.readouterr().err == (
        f"tools/test.py: error: checkpoint file '{ckpt}' does not exist.\n")
    real = tmp_path / 'real.pth'
    torch.save({}, str(real))
    assert test.main([TOY_ITER_CONFIG, str(real), '--out', 'm.txt']) == 2
    assert capsys.readouterr().err == (
        "tools/test.py: error: --out 'm.txt' must be a .json file.\n")


class Suspicious:
    """Not on the safe loader's allow-list."""


def test_test_refuses_an_unsafe_checkpoint_unless_opted_in(tmp_path, capsys):
    run_toy(make_toy_cfg(tmp_path / 'w', **{'train_cfg.max_iters': 2}))
    ckpt = safe_torch_load(str(tmp_path / 'w' / 'iter_2.pth'))
    ckpt['meta']['note'] = Suspicious()
    path = str(tmp_path / 'tampered.pth')
    torch.save(ckpt, path)
    test = load_tool('test')
    out = tmp_path / 'm.json'
    args = [TOY_ITER_CONFIG, path, '--work-dir', str(tmp_path / 't'),
            '--out', str(out), '--cfg-options']
    assert test.main(args + [_exp()]) == 1
    err = capsys.readouterr().err
    assert err.startswith(
        f"tools/test.py: error: Refusing to load checkpoint '{path}': it "
        f'contains the pickled global(s) {__name__}.Suspicious, which the '
        'safe loader does not allow')
    assert '--allow-unsafe-checkpoint' in err
    assert not out.exists()
    assert test.main(args + [_exp(), '--allow-unsafe-checkpoint']) == 0
    metrics = json.loads(out.read_text())
    assert (metrics['toy/count'], metrics['toy/id_sum']) == (7, 21)


# ------------------------------------------------------------- real runs
def test_train_with_amp_in_default_work_dir_then_test_to_json(tmp_path, run):
    # in-process (the command line runs in the SIGKILL test below)
    status, _, err = run('train', TOY_ITER_CONFIG, '--amp', '--cfg-options',
                         'train_cfg.max_iters=4', _exp())
    assert status == 0, err[-5000:]
    work = tmp_path / 'work_dirs' / 'toy_iter'
    assert sorted(p.name for p in work.glob('*.pth')) == [
        'iter_2.pth', 'iter_4.pth'
    ]
    train_logs = [e for e in _scalars(work)[-1] if 'loss' in e]
    assert len(train_logs) == 4
    key = 'act_is_fp16' if torch.cuda.is_available() else 'act_is_bf16'
    assert all(e[key] == 1.0 for e in train_logs)
    ckpt = safe_torch_load(str(work / 'iter_4.pth'))
    assert ckpt['meta']['iter'] == 4
    out = tmp_path / 'out' / 'm.json'
    assert run('test', TOY_ITER_CONFIG, work / 'iter_4.pth', '--out', out,
               '--work-dir', tmp_path / 't', '--cfg-options', _exp())[0] == 0
    metrics = json.loads(out.read_text())
    assert sorted(metrics) == [
        'toy/accuracy', 'toy/count', 'toy/id_sum', 'toy/score_sum'
    ]
    assert (metrics['toy/count'], metrics['toy/id_sum']) == (7, 21)
    assert metrics == _last_val(work)  # the same weights, the same numbers


@pytest.mark.skipif(torch.cuda.is_available(), reason='the gloo CPU path')
def test_distributed_run_releases_the_group_before_the_interpreter_exits(
        tmp_path):
    # left to the interpreter's exit, the DDP wrapper (which holds the gloo
    # group) can abort a finished run: it must be gone when main() returns
    from torch.nn.parallel import DistributedDataParallel
    env = dict(RANK='0', WORLD_SIZE='1', LOCAL_RANK='0',
               MASTER_ADDR='127.0.0.1', MASTER_PORT=str(_free_port()))
    gc.disable()  # only the tool's own collection may free the Runner
    try:
        with mock.patch.dict(os.environ, env):
            assert load_tool('train').main([
                TOY_ITER_CONFIG, '--work-dir', str(tmp_path), '--launcher',
                'pytorch', '--cfg-options', 'train_cfg.max_iters=2',
                _exp()
            ]) == 0
        assert not torch.distributed.is_initialized()
        assert not [o for o in gc.get_objects()
                    if isinstance(o, DistributedDataParallel)]
    finally:
        gc.enable()

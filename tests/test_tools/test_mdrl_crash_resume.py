"""Crash test of ``tools/train.py`` on the real (tiny) MDRL.

A training run is killed with SIGKILL three times and resumed with
``--resume`` each time; it must end with exactly the weights, optimizer
state, training losses and validation metrics of an uninterrupted run. The
kills: right after a checkpoint appears, after a random delay (up to one step
later, and never past the next checkpoint: mid-step or mid-save), and during
a validation. The randomness in
play: the identity-balanced sampler's plan, ``RandomFlip``, dropout and drop
path, and DLL's random token grouping (torch RNG), with
``randomness.deterministic=True``. The kill points come from an RNG with a
fixed seed (615936, the seed of a run whose second kill once landed three
checkpoints late); ``MDRL_CRASH_SEED=<seed>`` tries another, and the seed is
named in every failure.
"""
import glob
import json
import os
import os.path as osp
import random
import re
import resource
import signal
import subprocess
import sys
import time

import pytest
import torch
from mmengine.config import Config

from mdrl_plugin.engine import safe_torch_load

from mdrl_test_utils import REPO_ROOT, shrink_config

pytestmark = pytest.mark.slow  # 5 training processes

MAX_ITERS = 12
VAL_INTERVAL = 4


def _crash_cfg(bert_dir: str, data_root: str, path: str) -> str:
    """The shipped demo config, tiny, iteration based, with every random op."""
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs', 'mdrl_demo.py'))
    shrink_config(cfg, bert_dir, data_root)
    model = cfg.model
    model.image_encoder.update(drop_path_rate=0.1)
    model.image_encoder.arch_kwargs.update(drop_rate=0.1)
    model.text_encoder.update(dropout=0.1)
    model.image_local.update(dropout=0.1)
    model.cross_modal.update(dropout=0.1)
    # 6 identities x 3 images x 2 captions: 36 entries, 9 batches per epoch,
    # so the run crosses an epoch boundary
    cfg.train_dataloader.sampler = dict(
        type='IdentityBalancedSampler', batch_size=4, num_instances=2)
    assert any(t['type'] == 'RandomFlip'
               for t in cfg.train_dataloader.dataset.pipeline)
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=MAX_ITERS,
                         val_interval=VAL_INTERVAL)
    cfg.param_scheduler = [
        dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
             end=MAX_ITERS)
    ]
    # a checkpoint every iteration, written atomically, plus the best one
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook', interval=1, by_epoch=False, save_best='R1',
        rule='greater', backend_args=dict(backend='local_atomic'))
    cfg.randomness = dict(seed=0, deterministic=True)
    # one query batch per validation step: a kill can land in the middle
    cfg.val_dataloader.batch_size = 1
    cfg.dump(path)
    return path


def _train(cfg_file, work_dir, log, *extra):
    """Start ``tools/train.py``; its output goes to the file ``log``."""
    path = [REPO_ROOT] + ([os.environ['PYTHONPATH']]
                          if os.environ.get('PYTHONPATH') else [])
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1',
               PYTHONPATH=os.pathsep.join(path))
    args = [sys.executable, osp.join(REPO_ROOT, 'tools', 'train.py'),
            cfg_file, '--work-dir', str(work_dir), *extra]
    with open(log, 'w') as f:
        proc = subprocess.Popen(args, cwd=REPO_ROOT, env=env, stdout=f,
                                stderr=subprocess.STDOUT)
    proc.log = log
    return proc


def _tail(proc) -> str:
    with open(proc.log) as f:
        return f.read()[-5000:]


def _finish(proc, what):
    proc.wait(timeout=1800)
    assert proc.returncode == 0, f'{what} failed:\n{_tail(proc)}'


def _wait_for(proc, ready, what) -> float:
    """Wait until ``ready()``; return the time it became true."""
    deadline = time.time() + 1200
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(f'{what} ended too early:\n{_tail(proc)}')
        assert time.time() < deadline, f'{what}: timed out'
        time.sleep(0.01)
    return time.time()


def _kill(proc, what):
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, (
        f'{what} ended with {proc.returncode} before it could be killed')


def _saved(work_dir, k):
    return lambda: osp.exists(osp.join(str(work_dir), f'iter_{k}.pth'))


def _validating(proc):
    return lambda: 'Iter(val) [1/' in open(proc.log).read()


def _scalars(work_dir):
    """Logged scalars of every run in ``work_dir``, oldest run first."""
    runs = sorted(glob.glob(osp.join(str(work_dir), '*', 'vis_data',
                                     'scalars.json')))
    return [[json.loads(line) for line in open(p)] for p in runs]


def _train_logs(run):
    """Per iteration: lr, grad norm and every loss term, at full precision."""
    return {e['iter']: {k: v for k, v in e.items()
                        if k not in ('time', 'data_time', 'step')}
            for e in run if 'loss' in e}


def _val_metrics(run):
    """Per validated iteration: the retrieval metrics.

    The validation entries carry ``step=epoch`` (0 here), so they are keyed
    by the iteration of the training entry before them.
    """
    metrics, last_iter = {}, None
    for e in run:
        if 'loss' in e:
            last_iter = e['iter']
        elif 'R1' in e:
            metrics[last_iter] = {
                k: e[k] for k in ('R1', 'R5', 'R10', 'mAP', 'mINP')}
    return metrics


def test_sigkill_three_times_then_resume_matches_an_uninterrupted_run(
        tiny_bert_dir, tiny_pedes_root, tmp_path):
    seed = int(os.environ.get('MDRL_CRASH_SEED', 615936))
    rng = random.Random(seed)
    # kill 1 once iter_<first>.pth exists; kill 2 a random fraction of a
    # step after the resumed run's next checkpoint; kill 3 in the first
    # validation of the run after that
    first, fraction = rng.randint(2, 3), rng.random()
    note = (f'crash test seed {seed}: kill after iter_{first}.pth, then '
            f'{fraction:.2f} step after a checkpoint, then in a validation '
            f'(rerun with MDRL_CRASH_SEED={seed})')
    print(note)

    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cfg_file = _crash_cfg(tiny_bert_dir, tiny_pedes_root,
                          str(tmp_path / 'tiny_mdrl_crash.py'))
    full_dir, cut_dir = tmp_path / 'full', tmp_path / 'cut'
    full = _train(cfg_file, full_dir, tmp_path / 'full.out')
    victim = _train(cfg_file, cut_dir, tmp_path / 'cut0.out')
    try:
        _wait_for(victim, _saved(cut_dir, first), 'the first run')
        _kill(victim, 'the first run')
        victim = _train(cfg_file, cut_dir, tmp_path / 'cut1.out', '--resume')
        t0 = _wait_for(victim, _saved(cut_dir, first + 1), 'the 1st resume')
        t1 = _wait_for(victim, _saved(cut_dir, first + 2), 'the 1st resume')
        # a fraction of the last step's time, but never past the next
        # checkpoint: on a loaded machine one slow step followed by fast
        # ones would otherwise let the run go on for several checkpoints
        stop, next_saved = t1 + fraction * (t1 - t0), _saved(cut_dir,
                                                              first + 3)
        while time.time() < stop and not next_saved():
            time.sleep(0.002)
        _kill(victim, 'the first resumed run')
        victim = _train(cfg_file, cut_dir, tmp_path / 'cut2.out', '--resume')
        _wait_for(victim, _validating(victim), 'the 2nd resume')
        _kill(victim, 'the second resumed run')
        killed_in_val = open(victim.log).read()
        victim = _train(cfg_file, cut_dir, tmp_path / 'cut3.out', '--resume')
        _finish(victim, 'the third resumed run')
    finally:
        for proc in (victim, full):
            if proc.poll() is None:
                proc.kill()
    _finish(full, 'the uninterrupted run')
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f'CPU of the 5 training processes: '
          f'{cpu1.ru_utime - cpu0.ru_utime:.1f} s user, '
          f'{cpu1.ru_stime - cpu0.ru_stime:.1f} s system')

    runs = _scalars(cut_dir)
    assert len(runs) == 4, note
    starts = []
    for run_log in sorted(glob.glob(str(cut_dir / '*' / '*.log')))[1:]:
        found = re.search(r'resumed epoch: \d+, iter: (\d+)',
                          open(run_log).read())
        assert found, f'{note}: {run_log} did not resume'
        starts.append(int(found.group(1)))
    print(f'resumed at iterations {starts}')
    # the newest complete checkpoint, or the one before when the kill fell
    # between writing a checkpoint and its last_checkpoint pointer
    assert first - 1 <= starts[0] and first + 1 <= starts[1] <= first + 3, (
        note, starts)
    # killed in the first validation after the checkpoint it resumed from,
    # before its last batch: the next run starts at that validation's
    # checkpoint (saved before validating) and skips that validation
    steps = [tuple(map(int, m)) for m in re.findall(
        r'Iter\(val\) \[(\d+)/(\d+)\]', killed_in_val)]
    assert steps and all(i < n for i, n in steps), (note, steps)
    val_at = (starts[1] // VAL_INTERVAL + 1) * VAL_INTERVAL
    assert starts[2] == val_at < MAX_ITERS, (note, starts)

    # every iteration's loss: the later run's log wins for repeated iters
    full_runs = _scalars(full_dir)
    assert len(full_runs) == 1
    cut_losses = {}
    for run in runs:
        cut_losses.update(_train_logs(run))
    assert _train_logs(full_runs[0]) == cut_losses, note
    assert sorted(cut_losses) == list(range(1, MAX_ITERS + 1))

    full_ckpt = safe_torch_load(str(full_dir / f'iter_{MAX_ITERS}.pth'))
    cut_ckpt = safe_torch_load(str(cut_dir / f'iter_{MAX_ITERS}.pth'))
    for key in ('state_dict', 'optimizer', 'param_schedulers'):
        assert _equal(full_ckpt[key], cut_ckpt[key]), f'{note}: {key}'
    # every validation of the interrupted runs (the last one at MAX_ITERS)
    full_val = _val_metrics(full_runs[0])
    assert sorted(full_val) == list(range(VAL_INTERVAL, MAX_ITERS + 1,
                                          VAL_INTERVAL))
    for run in runs:
        for step, metrics in _val_metrics(run).items():
            assert metrics == full_val[step], f'{note}: validation {step}'
    assert MAX_ITERS in _val_metrics(runs[-1]), note


def _equal(a, b) -> bool:
    """Bitwise equality of nested containers of tensors and numbers."""
    if isinstance(a, torch.Tensor):
        return (isinstance(b, torch.Tensor) and a.dtype == b.dtype
                and a.shape == b.shape and torch.equal(a, b))
    if isinstance(a, dict):
        return (isinstance(b, dict) and a.keys() == b.keys()
                and all(_equal(a[k], b[k]) for k in a))
    if isinstance(a, (list, tuple)):
        return (type(a) is type(b) and len(a) == len(b)
                and all(_equal(x, y) for x, y in zip(a, b)))
    return a == b

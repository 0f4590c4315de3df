"""ExactResumeHook: a resumed run ends exactly like an uninterrupted one."""
import random

import numpy as np
import pytest
import torch

import mdrl_plugin.engine.hooks.exact_resume_hook as erh
from mdrl_plugin.engine import ExactResumeHook, safe_torch_load
from mdrl_plugin.engine.hooks.exact_resume_hook import get_rng_state, set_rng_state
from mdrl_plugin.registry import HOOKS

from toy_helpers import make_toy_cfg, run_toy, state_dicts_equal

pytestmark = pytest.mark.slow  # toy trainings


def _draws():
    return (random.random(), float(np.random.rand()), float(torch.rand(1)))


def _final(runner, ckpt_path):
    weights = safe_torch_load(ckpt_path)['state_dict']
    hub = runner.message_hub
    metrics = {k: hub.get_scalar(f'val/toy/{k}').current()
               for k in ('count', 'id_sum', 'score_sum', 'accuracy')}
    return weights, metrics


def _without_hook(cfg):
    cfg.custom_hooks = [h for h in cfg.custom_hooks
                        if h['type'] != 'ExactResumeHook']
    return cfg


def test_rng_state_round_trip_survives_a_safe_checkpoint(tmp_path):
    state = get_rng_state()
    expected = _draws()
    path = str(tmp_path / 'rng.pth')
    torch.save({'rng_state': state}, path)
    _draws()
    # Runner.resume maps checkpoints to the training device
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    set_rng_state(safe_torch_load(path, map_location=device)['rng_state'])
    assert _draws() == expected
    with pytest.raises(KeyError, match="RNG state lacks the 'numpy' entry"):
        set_rng_state(dict(python=state['python'], torch=state['torch']))


def _iter_runs(tmp_path, stop_at, resume_name, with_hook=True, **overrides):
    overrides.setdefault('train_cfg.max_iters', 12)
    full_cfg = make_toy_cfg(tmp_path / 'full', **overrides)
    cut_cfg = make_toy_cfg(tmp_path / 'cut', **overrides)
    if not with_hook:
        _without_hook(full_cfg)
        _without_hook(cut_cfg)
    max_iters = full_cfg.train_cfg.max_iters
    full = run_toy(full_cfg)
    cut_cfg.custom_hooks.append(dict(type='ToyStopHook', at_iter=stop_at))
    run_toy(cut_cfg)
    assert not (tmp_path / 'cut' / f'iter_{max_iters}.pth').exists()
    resume_cfg = make_toy_cfg(tmp_path / 'cut', **overrides)
    if not with_hook:
        _without_hook(resume_cfg)
    resume_cfg.resume = True
    resume_cfg.load_from = str(tmp_path / 'cut' / resume_name)
    resumed = run_toy(resume_cfg)
    last = f'iter_{max_iters}.pth'
    return (_final(full, str(tmp_path / 'full' / last)),
            _final(resumed, str(tmp_path / 'cut' / last)))


def test_iter_based_mid_epoch_resume_is_exact(tmp_path):
    # 10 samples, batch 4: iteration 6 is in the middle of an epoch
    (w_full, m_full), (w_res, m_res) = _iter_runs(tmp_path, 7, 'iter_6.pth')
    assert state_dicts_equal(w_full, w_res)
    assert m_full == m_res
    assert m_full['count'] == 7 and m_full['id_sum'] == 21


def test_without_the_hook_the_resume_is_not_exact(tmp_path):
    (w_full, m_full), (w_res, m_res) = _iter_runs(
        tmp_path, 7, 'iter_6.pth', with_hook=False)
    assert not state_dicts_equal(w_full, w_res)
    assert m_full['score_sum'] != m_res['score_sum']


def test_iter_based_with_default_sampler_across_an_epoch_end(tmp_path):
    # 10 samples, batch 5, DefaultSampler: the resumed run restarts the
    # dataloader right after the checkpoint (MMEngine's epoch wrap)
    (w_full, m_full), (w_res, m_res) = _iter_runs(
        tmp_path, 3, 'iter_2.pth', **{
            'train_cfg.max_iters': 4,
            'train_cfg.val_interval': 2,
            'train_dataloader.batch_size': 5,
            'train_dataloader.sampler': dict(
                type='DefaultSampler', shuffle=True),
        })
    assert state_dicts_equal(w_full, w_res)
    assert m_full == m_res


EPOCH_CFG = {
    'train_cfg': dict(type='EpochBasedTrainLoop', max_epochs=3,
                      val_interval=1),
    'train_dataloader.sampler': dict(type='DefaultSampler', shuffle=True),
    'default_hooks.checkpoint': dict(
        type='CheckpointHook', interval=1, by_epoch=True,
        backend_args=dict(backend='local_atomic')),
}


@pytest.mark.parametrize('with_hook', [True, False])
def test_epoch_based_resume_from_an_epoch_checkpoint_is_exact(
        tmp_path, with_hook):

    def cfg_for(work_dir):
        cfg = make_toy_cfg(work_dir, **EPOCH_CFG)
        return cfg if with_hook else _without_hook(cfg)

    full = run_toy(cfg_for(tmp_path / 'full'))
    cut_cfg = cfg_for(tmp_path / 'cut')
    # 3 batches per epoch: die in the first iteration of epoch 3
    cut_cfg.custom_hooks.append(dict(type='ToyStopHook', at_iter=7))
    run_toy(cut_cfg)
    assert not (tmp_path / 'cut' / 'epoch_3.pth').exists()
    resume_cfg = cfg_for(tmp_path / 'cut')
    resume_cfg.resume = True
    resume_cfg.load_from = str(tmp_path / 'cut' / 'epoch_2.pth')
    resumed = run_toy(resume_cfg)
    w_full, m_full = _final(full, str(tmp_path / 'full' / 'epoch_3.pth'))
    w_res, m_res = _final(resumed, str(tmp_path / 'cut' / 'epoch_3.pth'))
    # the hook is what makes the difference
    assert state_dicts_equal(w_full, w_res) is with_hook
    assert (m_full == m_res) is with_hook


def test_epoch_based_mid_epoch_resume_warns(tmp_path, monkeypatch):
    messages = []
    monkeypatch.setattr(erh, 'print_log',
                        lambda msg, **kwargs: messages.append(msg))
    cfg = make_toy_cfg(tmp_path / 'cut', **EPOCH_CFG)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=4,
                                        by_epoch=False)
    cfg.custom_hooks.append(dict(type='ToyStopHook', at_iter=5))
    run_toy(cfg)
    resume_cfg = make_toy_cfg(tmp_path / 'cut', **EPOCH_CFG)
    resume_cfg.resume = True
    resume_cfg.load_from = str(tmp_path / 'cut' / 'iter_4.pth')
    run_toy(resume_cfg)
    assert messages == [
        'ExactResumeHook: resuming EpochBasedTrainLoop from a mid-epoch '
        'checkpoint (iter 4, 3 batches per epoch). MMEngine restarts the '
        'epoch from its first batch, so the resume is not exact; save '
        'checkpoints at epoch ends or use IterBasedTrainLoop.'
    ]


class _FakeRunner:
    iter = 0
    epoch = 0
    train_loop = None
    hooks = []


def test_validation_is_rng_neutral():
    hook = HOOKS.build(dict(type='ExactResumeHook'))
    assert isinstance(hook, ExactResumeHook)
    state = get_rng_state()
    expected = _draws()
    set_rng_state(state)
    hook.before_val(_FakeRunner)
    torch.rand(100), np.random.rand(7), random.random()  # validation draws
    hook.after_val(_FakeRunner)
    assert _draws() == expected
    # switched off: validation consumes the training stream
    hook = ExactResumeHook(neutral_validation=False)
    set_rng_state(state)
    hook.before_val(_FakeRunner)
    torch.rand(100)
    hook.after_val(_FakeRunner)
    assert _draws() != expected


def test_load_from_without_resume_keeps_the_rng_untouched():
    hook = ExactResumeHook()
    saved = get_rng_state()
    _draws()
    checkpoint = dict(meta=dict(epoch=0, iter=6),
                      rng_state=dict(world_size=1, states=[saved]))
    hook.after_load_checkpoint(_FakeRunner, checkpoint)
    before = get_rng_state()
    expected = _draws()
    set_rng_state(before)
    hook.before_train_epoch(_FakeRunner)  # iter 0: a fresh run, no resume
    assert _draws() == expected


def test_checkpoints_carry_the_states(tmp_path):
    run_toy(make_toy_cfg(tmp_path / 'w', **{'train_cfg.max_iters': 2}))
    ckpt = safe_torch_load(str(tmp_path / 'w' / 'iter_2.pth'))
    assert ckpt['rng_state']['world_size'] == 1
    expected = {'python', 'numpy', 'torch'}
    if torch.cuda.is_available():  # the run initialised CUDA
        expected.add('cuda')
    assert set(ckpt['rng_state']['states'][0]) == expected

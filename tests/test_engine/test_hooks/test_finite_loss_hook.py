"""FiniteLossHook stops a diverging run before its weights are saved."""
import os

import pytest
import torch
from mmengine.hooks import CheckpointHook
from mmengine.runner import Runner

from mdrl_plugin.engine import FiniteLossHook, NonFiniteLossError
from mdrl_plugin.registry import HOOKS

from toy_helpers import make_toy_cfg


def test_built_from_the_registry():
    hook = HOOKS.build(dict(type='FiniteLossHook', key_pattern='loss_'))
    assert isinstance(hook, FiniteLossHook)
    assert hook.key_pattern == 'loss_'
    # runs before the CheckpointHook (and the LoggerHook) in after_train_iter
    from mmengine.runner import get_priority
    assert get_priority(hook.priority) < get_priority(CheckpointHook.priority)
    assert get_priority(hook.priority) < get_priority('BELOW_NORMAL')
    with pytest.raises(TypeError, match='key_pattern must be a non-empty str'):
        FiniteLossHook(key_pattern='')


def test_nan_at_iteration_k_stops_before_its_checkpoint(tmp_path):
    work = tmp_path / 'work'
    cfg = make_toy_cfg(
        work, **{
            'model.nan_at_iter': 5,
            'default_hooks.checkpoint.interval': 1,
            'train_cfg.max_iters': 8
        })
    runner = Runner.from_cfg(cfg)
    with pytest.raises(NonFiniteLossError) as info:
        runner.train()
    assert str(info.value) == (
        'Non-finite loss at iteration 5 (epoch 1): loss=nan, loss_cls=nan. '
        'Training was stopped before a checkpoint of the diverged weights '
        "could be saved; the last checkpoint is '"
        f"{work / 'iter_4.pth'}'. Lower the learning rate, enable gradient "
        'clipping (optim_wrapper.clip_grad) or check the inputs of this '
        'iteration.')
    saved = sorted(n for n in os.listdir(work) if n.endswith('.pth'))
    assert saved == ['iter_1.pth', 'iter_2.pth', 'iter_3.pth', 'iter_4.pth']
    assert (work / 'last_checkpoint').read_text() == str(work / 'iter_4.pth')
    # the weights in memory are garbage now; the saved ones are not
    assert not torch.isfinite(runner.model.fc1.weight).all()
    saved_w = torch.load(work / 'iter_4.pth', weights_only=False)
    assert torch.isfinite(saved_w['state_dict']['fc1.weight']).all()


def test_inf_and_only_loss_keys(tmp_path):
    hook = FiniteLossHook()

    class FakeRunner:
        iter = 9
        epoch = 0

        class message_hub:  # noqa: N801
            @staticmethod
            def get_info(key):
                return None

    # non-loss entries may be anything
    hook.after_train_iter(FakeRunner, 0, outputs=dict(
        loss=torch.tensor(1.0), acc=torch.tensor(float('nan'))))
    with pytest.raises(NonFiniteLossError) as info:
        hook.after_train_iter(FakeRunner, 0, outputs=dict(
            loss=torch.tensor(float('inf')), loss_id=2.0,
            loss_cmpm=float('-inf')))
    assert str(info.value).startswith(
        'Non-finite loss at iteration 10 (epoch 1): loss=inf, '
        'loss_cmpm=-inf. ')
    assert 'the last checkpoint is none.' in str(info.value)

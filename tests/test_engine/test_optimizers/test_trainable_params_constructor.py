"""TrainableParamsOptimWrapperConstructor leaves frozen parameters out."""
import logging

import pytest
import torch
from mmengine.logging import MMLogger
from mmengine.optim import DefaultOptimWrapperConstructor, build_optim_wrapper
from mmengine.registry import DefaultScope

from mdrl_plugin.engine import TrainableParamsOptimWrapperConstructor
from mdrl_plugin.registry import OPTIM_WRAPPER_CONSTRUCTORS

from toy_components import ToyModel

BASE = dict(type='OptimWrapper',
            optimizer=dict(type='SGD', lr=0.1, momentum=0.9,
                           weight_decay=0.01))


def _ids(optim_wrapper):
    # MMEngine appends a dummy group (`base_param_settings`) for logging the
    # base lr when there are several groups
    dummy = getattr(optim_wrapper, 'base_param_settings', None)
    return [id(p) for group in optim_wrapper.param_groups
            if group is not dummy for p in group['params']]


def _names(model, ids):
    by_id = {id(p): n for n, p in model.named_parameters()}
    return sorted(by_id[i] for i in ids)


TRAINABLE = ['fc1.bias', 'fc1.weight', 'fc2.bias', 'fc2.weight']


class _Capture(logging.Handler):

    def __init__(self):
        super().__init__(level=logging.INFO)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def log_messages():
    handler = _Capture()
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    yield handler.messages
    logger.removeHandler(handler)


def test_without_paramwise_cfg(log_messages):
    model = ToyModel(frozen_input_layer=True)
    constructor = OPTIM_WRAPPER_CONSTRUCTORS.build(
        dict(type='TrainableParamsOptimWrapperConstructor',
             optim_wrapper_cfg=BASE))
    assert isinstance(constructor, TrainableParamsOptimWrapperConstructor)
    wrapper = constructor(model)
    assert _names(model, _ids(wrapper)) == TRAINABLE
    assert wrapper.param_groups[0]['lr'] == 0.1
    assert wrapper.param_groups[0]['weight_decay'] == 0.01
    assert [m for m in log_messages if 'TrainableParams' in m] == [
        'TrainableParamsOptimWrapperConstructor: left 2 frozen parameter '
        'tensor(s) (72 values, under frozen) out of the optimizer.'
    ]
    # MMEngine's default keeps the frozen ones in the optimizer
    default = DefaultOptimWrapperConstructor(BASE)(model)
    assert _names(model, _ids(default)) == sorted(
        TRAINABLE + ['frozen.bias', 'frozen.weight'])


def test_with_paramwise_cfg_keeps_the_rules(log_messages):
    model = ToyModel(frozen_input_layer=True)
    constructor = TrainableParamsOptimWrapperConstructor(
        BASE,
        paramwise_cfg=dict(
            custom_keys={'fc2': dict(lr_mult=0.5)}, bias_decay_mult=0.0))
    wrapper = constructor(model)
    assert _names(model, _ids(wrapper)) == TRAINABLE
    by_name = {}
    names = {id(p): n for n, p in model.named_parameters()}
    for group in wrapper.param_groups:
        if group is getattr(wrapper, 'base_param_settings', None):
            continue
        for p in group['params']:
            by_name[names[id(p)]] = (group['lr'], group['weight_decay'])
    assert by_name['fc2.weight'] == (0.05, 0.01)
    assert by_name['fc2.bias'] == (0.05, 0.01)  # custom key wins
    assert by_name['fc1.weight'] == (0.1, 0.01)
    assert by_name['fc1.bias'] == (0.1, 0.0)
    # no per-parameter "is skipped" warnings, one summary line
    assert not [m for m in log_messages if 'is skipped since' in m]
    assert log_messages[-1] == (
        'TrainableParamsOptimWrapperConstructor: left 2 frozen parameter '
        'tensor(s) (72 values, under frozen) out of the optimizer.')


def test_training_steps_never_touch_frozen_parameters():
    model = ToyModel(frozen_input_layer=True, shuffle_hidden=False)
    frozen_before = model.frozen.weight.detach().clone()
    wrapper = TrainableParamsOptimWrapperConstructor(BASE)(model)
    x = torch.rand(4, 8)
    for _ in range(3):
        loss = model(x).pow(2).mean()
        wrapper.update_params(loss)
    assert torch.equal(model.frozen.weight, frozen_before)
    state = wrapper.state_dict()['state']
    assert len(state) == 4  # momentum buffers for the trainable ones only


def test_wrapped_model_and_mmengine_builder():
    model = ToyModel(frozen_input_layer=True)

    class Wrapper(torch.nn.Module):

        def __init__(self, module):
            super().__init__()
            self.module = module

    cfg = dict(BASE, constructor='TrainableParamsOptimWrapperConstructor')
    with DefaultScope.overwrite_default_scope('mdrl_plugin'):
        wrapper = build_optim_wrapper(Wrapper(model), cfg)
    assert _names(model, _ids(wrapper)) == TRAINABLE


def test_all_frozen_is_an_error():
    model = ToyModel()
    model.requires_grad_(False)
    with pytest.raises(ValueError) as info:
        TrainableParamsOptimWrapperConstructor(BASE)(model)
    assert str(info.value) == (
        'TrainableParamsOptimWrapperConstructor: every parameter of ToyModel '
        'has requires_grad=False; there is nothing to optimise.')

"""MixedPrecisionOptimWrapper: bf16 autocast on CPU, fp16 + loss scaling."""
import importlib.util
import logging
import os.path as osp

import pytest
import torch
from mmengine.logging import MMLogger
from mmengine.optim import AmpOptimWrapper

from mdrl_plugin.engine import MixedPrecisionOptimWrapper
from mdrl_plugin.registry import OPTIM_WRAPPERS

from toy_components import ToyModel
from toy_helpers import TOY_DIR, make_toy_cfg, run_toy


def enable_amp(cfg):
    """``tools/train.py --amp``."""
    spec = importlib.util.spec_from_file_location('mdrl_tool_train', osp.join(
        osp.dirname(osp.dirname(TOY_DIR)), 'tools', 'train.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.enable_amp(cfg)

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason='needs a CUDA device')


def _build(model, **kwargs):
    return OPTIM_WRAPPERS.build(
        dict(type='MixedPrecisionOptimWrapper',
             optimizer=torch.optim.SGD(model.parameters(), lr=0.1), **kwargs))


def _batch(n=4):
    gen = torch.Generator().manual_seed(1)
    return torch.rand(n, 8, generator=gen), torch.arange(n) % 3


def _loss(model, x, y):
    return torch.nn.functional.cross_entropy(model(x).float(), y)


@pytest.mark.skipif(torch.cuda.is_available(), reason='CPU defaults')
def test_cpu_default_is_bf16_without_a_loss_scaler():
    model = ToyModel(shuffle_hidden=False)
    wrapper = _build(model)
    assert isinstance(wrapper, MixedPrecisionOptimWrapper)
    assert isinstance(wrapper, AmpOptimWrapper)
    assert wrapper.device_type == 'cpu'
    assert wrapper.cast_dtype is torch.bfloat16
    assert not wrapper.loss_scaler.is_enabled()  # no loss scaling
    x, y = _batch()
    with wrapper.optim_context(model):
        model(x)
        assert model.last_activation_dtype is torch.bfloat16
    model(x)
    assert model.last_activation_dtype is torch.float32


def test_bf16_steps_update_float32_weights():
    model = ToyModel(shuffle_hidden=False)
    wrapper = _build(model, device_type='cpu', dtype='bfloat16')
    x, y = _batch()
    before = model.fc1.weight.detach().clone()
    losses = []
    for _ in range(5):
        with wrapper.optim_context(model):
            loss = _loss(model, x, y)
        wrapper.update_params(loss)
        losses.append(loss.item())
    assert model.fc1.weight.dtype is torch.float32
    assert not torch.equal(model.fc1.weight, before)
    assert losses[-1] < losses[0]
    assert 'loss_scaler' not in wrapper.state_dict()


def test_fp16_on_cpu_uses_a_loss_scaler_and_round_trips():
    model = ToyModel(shuffle_hidden=False)
    wrapper = _build(model, device_type='cpu', dtype='float16',
                     loss_scale=dict(init_scale=256.0), clip_grad=dict(
                         max_norm=10.0))
    assert isinstance(wrapper.loss_scaler, torch.amp.GradScaler)
    assert wrapper.loss_scaler.get_scale() == 256.0
    x, y = _batch()
    before = model.fc2.weight.detach().clone()
    with wrapper.optim_context(model):
        loss = _loss(model, x, y)
        assert model.last_activation_dtype is torch.float16
    wrapper.update_params(loss)
    assert not torch.equal(model.fc2.weight, before)
    state = wrapper.state_dict()
    assert state['loss_scaler']['scale'] == wrapper.loss_scaler.get_scale()
    other = _build(ToyModel(), device_type='cpu', dtype='float16')
    other.load_state_dict(state)
    assert other.loss_scaler.get_scale() == wrapper.loss_scaler.get_scale()


def test_static_loss_scale_stays_fixed():
    model = ToyModel(shuffle_hidden=False)
    wrapper = _build(model, device_type='cpu', dtype=torch.float16,
                     loss_scale=8.0)
    x, y = _batch()
    for _ in range(3):
        with wrapper.optim_context(model):
            loss = _loss(model, x, y)
        wrapper.update_params(loss)
    assert wrapper.loss_scaler.get_scale() == 8.0


def test_loading_an_fp16_state_into_bf16_warns_and_keeps_the_optimizer():
    model = ToyModel(shuffle_hidden=False)
    fp16 = _build(model, device_type='cpu', dtype='float16')
    state = fp16.state_dict()
    state['param_groups'][0]['lr'] = 0.025
    bf16 = _build(ToyModel(), device_type='cpu', dtype='bfloat16')
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        bf16.load_state_dict(state)
    finally:
        logger.removeHandler(handler)
    assert bf16.param_groups[0]['lr'] == 0.025
    assert [r.getMessage() for r in records] == [
        'MixedPrecisionOptimWrapper: ignoring the saved fp16 loss scaler '
        'state (this run uses torch.bfloat16).'
    ]


@pytest.mark.parametrize('kwargs, error, message', [
    (dict(dtype='float32'), ValueError,
     "MixedPrecisionOptimWrapper: dtype must be one of ['bfloat16', "
     "'float16'] or None, got 'float32'"),
    (dict(dtype=torch.float64), ValueError,
     'MixedPrecisionOptimWrapper: dtype must be float16 or bfloat16, got '
     'torch.float64'),
    (dict(device_type='npu'), ValueError,
     "MixedPrecisionOptimWrapper: device_type must be 'cuda', 'cpu' or None, "
     "got 'npu'"),
    (dict(device_type='cpu', dtype='float16', loss_scale='static'), TypeError,
     "MixedPrecisionOptimWrapper: loss_scale must be 'dynamic', a float or a "
     "dict, got 'static'"),
])
def test_bad_arguments(kwargs, error, message):
    with pytest.raises(error) as info:
        _build(ToyModel(), **kwargs)
    assert str(info.value) == message


@pytest.mark.skipif(torch.cuda.is_available(), reason='CPU-only check')
def test_cuda_requested_without_cuda():
    with pytest.raises(RuntimeError) as info:
        _build(ToyModel(), device_type='cuda')
    assert str(info.value) == ("MixedPrecisionOptimWrapper: device_type="
                               "'cuda' but CUDA is not available")


@needs_cuda
def test_cuda_default_is_fp16_with_dynamic_loss_scaling():
    model = ToyModel(shuffle_hidden=False).cuda()
    wrapper = _build(model)
    assert wrapper.device_type == 'cuda'
    assert wrapper.cast_dtype is torch.float16
    assert isinstance(wrapper.loss_scaler, torch.amp.GradScaler)
    x, y = (t.cuda() for t in _batch())
    before = model.fc1.weight.detach().clone()
    for _ in range(3):
        with wrapper.optim_context(model):
            loss = _loss(model, x, y)
            assert model.last_activation_dtype is torch.float16
        wrapper.update_params(loss)
    assert model.fc1.weight.dtype is torch.float32
    assert not torch.equal(model.fc1.weight, before)
    assert wrapper.state_dict()['loss_scaler']['scale'] > 0


@needs_cuda
def test_cuda_bf16_has_no_loss_scaler():
    if not torch.cuda.is_bf16_supported():
        pytest.skip('GPU without bf16')
    model = ToyModel(shuffle_hidden=False).cuda()
    wrapper = _build(model, dtype='bfloat16')
    assert not wrapper.loss_scaler.is_enabled()
    x, y = (t.cuda() for t in _batch())
    with wrapper.optim_context(model):
        loss = _loss(model, x, y)
        assert model.last_activation_dtype is torch.bfloat16
    wrapper.update_params(loss)


def test_enable_amp_switches_the_config_and_the_runner_autocasts(tmp_path):
    cfg = make_toy_cfg(tmp_path / 'w', **{'train_cfg.max_iters': 2})
    enable_amp(cfg)
    assert cfg.optim_wrapper.type == 'mdrl_plugin.MixedPrecisionOptimWrapper'
    assert cfg.optim_wrapper.loss_scale == 'dynamic'
    runner = run_toy(cfg)
    assert isinstance(runner.optim_wrapper, MixedPrecisionOptimWrapper)
    expected = 'act_is_fp16' if torch.cuda.is_available() else 'act_is_bf16'
    assert runner.message_hub.get_scalar(f'train/{expected}').current() == 1


def test_enable_amp_refuses_other_wrappers(tmp_path):
    cfg = make_toy_cfg(tmp_path / 'w')
    cfg.optim_wrapper.type = 'ApexOptimWrapper'
    with pytest.raises(ValueError) as info:
        enable_amp(cfg)
    assert str(info.value) == (
        '--amp switches `optim_wrapper.type` from OptimWrapper or '
        'AmpOptimWrapper to MixedPrecisionOptimWrapper, but the config uses '
        "'ApexOptimWrapper'.")
    cfg.optim_wrapper.type = 'AmpOptimWrapper'
    cfg.optim_wrapper.dtype = 'bfloat16'
    enable_amp(cfg)
    assert cfg.optim_wrapper.type == 'mdrl_plugin.MixedPrecisionOptimWrapper'
    assert cfg.optim_wrapper.dtype == 'bfloat16'
    cfg.optim_wrapper = None
    with pytest.raises(ValueError, match='--amp needs an `optim_wrapper`'):
        enable_amp(cfg)

"""Strict checkpoint matching: load_model_weights and CheckpointLoadingHook."""
import re

import pytest
import torch
from mmengine.runner.checkpoint import CheckpointLoader
from toy_helpers import make_toy_cfg, run_toy

from mdrl_plugin.engine import (CheckpointMismatchError, UnsafeCheckpointError,
                                disable_safe_checkpoint_loading,
                                load_model_weights,
                                safe_checkpoint_loading_enabled)
from mdrl_plugin.engine.checkpoint import check_state_dict
from mdrl_plugin.registry import MODELS


def _toy(**kwargs):
    import toy_components  # noqa: F401  (registers ToyModel)
    return MODELS.build(dict(type='ToyModel', **kwargs))


def _save(tmp_path, name, state_dict, wrap=True):
    path = str(tmp_path / name)
    torch.save({'meta': {}, 'state_dict': state_dict} if wrap else state_dict,
               path)
    return path


def test_a_fitting_checkpoint_loads_every_weight(tmp_path):
    src = _toy()
    with torch.no_grad():
        for p in src.parameters():
            p.add_(1.0)
    # a wrapped model's `module.` prefix and a plain state dict both load
    sd = {f'module.{k}': v for k, v in src.state_dict().items()}
    for path in (_save(tmp_path, 'a.pth', sd),
                 _save(tmp_path, 'b.pth', src.state_dict(), wrap=False)):
        dst = _toy()
        load_model_weights(dst, path)
        for k, v in src.state_dict().items():
            assert torch.equal(dst.state_dict()[k], v), k


def test_a_shape_mismatch_is_refused_with_both_shapes(tmp_path):
    sd = _toy().state_dict()
    sd['fc1.weight'] = torch.zeros(19, 8)  # 3 extra rows
    path = _save(tmp_path, 'other.pth', sd)
    model = _toy()
    before = model.fc1.weight.detach().clone()
    with pytest.raises(CheckpointMismatchError) as info:
        load_model_weights(model, path, config='configs/x.py')
    assert str(info.value) == (
        f"Checkpoint '{path}' does not fit the model of config "
        "'configs/x.py': 1 weight(s) of another shape (fc1.weight: "
        'checkpoint (19, 8) vs model (16, 8)), 0 missing key(s), 0 '
        'unexpected key(s). It was most likely written for another config '
        '(another model, width or number of identities): use the config it '
        'was trained with. To load only the weights that fit and keep the '
        'others at their initialisation, pass --allow-partial-checkpoint '
        '(tools) or allow_partial=True.')
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, RuntimeError)  # as MMEngine's strict load
    assert torch.equal(model.fc1.weight, before)  # nothing was loaded


def test_missing_and_unexpected_keys_are_counted(tmp_path):
    # a checkpoint of a model with an extra (frozen) input layer, missing fc2
    sd = _toy(frozen_input_layer=True).state_dict()
    del sd['fc2.weight'], sd['fc2.bias']
    path = _save(tmp_path, 'baseline.pth', sd)
    with pytest.raises(CheckpointMismatchError) as info:
        load_model_weights(_toy(), path)
    assert info.value.match.missing == ['fc2.weight', 'fc2.bias']
    assert info.value.match.unexpected == ['frozen.weight', 'frozen.bias']
    assert ('2 missing key(s) (e.g. fc2.weight, fc2.bias), 2 unexpected '
            'key(s) (e.g. frozen.weight, frozen.bias)') in str(info.value)


def test_the_message_names_the_first_three_and_counts_the_rest(tmp_path):
    src = _toy(in_dim=5, hidden=4, num_classes=2)
    path = _save(tmp_path, 'small.pth', src.state_dict())
    with pytest.raises(CheckpointMismatchError) as info:
        load_model_weights(_toy(), path)
    assert re.search(r'4 weight\(s\) of another shape \(fc1.weight: '
                     r'checkpoint \(4, 5\) vs model \(16, 8\); fc1.bias: .*; '
                     r'fc2.weight: .* and 1 more\)', str(info.value))


def test_allow_partial_loads_what_fits_and_reports_the_rest(tmp_path,
                                                            caplog):
    import logging
    logger = logging.getLogger('partial_load_test')
    src = _toy()
    with torch.no_grad():
        for p in src.parameters():
            p.fill_(3.0)
    sd = src.state_dict()
    sd['fc1.weight'] = torch.zeros(19, 8)
    sd['extra.weight'] = torch.zeros(2)
    del sd['fc2.bias']
    path = _save(tmp_path, 'partial.pth', sd)
    model = _toy()
    init = {k: v.clone() for k, v in model.state_dict().items()}
    with caplog.at_level(logging.WARNING, logger=logger.name):
        load_model_weights(model, path, allow_partial=True, logger=logger)
    assert torch.equal(model.fc1.weight, init['fc1.weight'])  # kept
    assert torch.equal(model.fc2.bias, init['fc2.bias'])  # kept
    assert torch.equal(model.fc1.bias, torch.full((16, ), 3.0))  # loaded
    assert torch.equal(model.fc2.weight, torch.full((3, 16), 3.0))
    assert caplog.messages == [
        f"Partial checkpoint '{path}' (allowed): 2 model weight(s) left "
        'uninitialised: fc1.weight, fc2.bias; 1 checkpoint key(s) '
        'ignored: extra.weight.']


def test_check_state_dict_ignores_batchnorm_counters():
    model = torch.nn.BatchNorm1d(3)
    sd = model.state_dict()
    del sd['num_batches_tracked']
    assert check_state_dict(model, sd, 'bn.pth') == ([], [], [])


def test_hook_refuses_load_from_that_does_not_fit(tmp_path):
    sd = _toy().state_dict()
    sd['fc2.weight'] = torch.zeros(4, 16)
    path = _save(tmp_path, 'other.pth', sd)
    hook = dict(type='CheckpointLoadingHook')
    cfg = make_toy_cfg(tmp_path / 'w', **{'train_cfg.max_iters': 2})
    cfg.custom_hooks = cfg.custom_hooks + [hook]
    cfg.load_from = path
    with pytest.raises(CheckpointMismatchError,
                       match=r'fc2.weight: checkpoint \(4, 16\) vs model '
                       r'\(3, 16\)'):
        run_toy(cfg)
    assert not (tmp_path / 'w' / 'iter_2.pth').exists()  # never trained
    cfg = make_toy_cfg(tmp_path / 'p', **{'train_cfg.max_iters': 2})
    cfg.custom_hooks = cfg.custom_hooks + [dict(hook, allow_partial=True)]
    cfg.load_from = path
    run_toy(cfg)
    assert (tmp_path / 'p' / 'iter_2.pth').exists()


def test_hook_switches_the_safe_loader_on_for_the_run_only(tmp_path):
    import toy_components
    from mmengine.runner import Runner
    from mmengine.runner.checkpoint import load_from_local

    from mdrl_plugin.engine import CheckpointLoadingHook, safe_torch_load
    disable_safe_checkpoint_loading()  # as in a fresh process
    ckpt_dir = tmp_path / 'a'
    run_toy(make_toy_cfg(ckpt_dir, **{'train_cfg.max_iters': 2}))
    noted = str(tmp_path / 'noted.pth')  # a class the hook allows
    torch.save({'note': toy_components.ToyInterrupt('x')}, noted)
    cfg = make_toy_cfg(tmp_path / 'b', **{'train_cfg.max_iters': 4})
    cfg.custom_hooks = cfg.custom_hooks + [dict(
        type='CheckpointLoadingHook',
        allow_globals=['toy_components.ToyInterrupt'])]
    cfg.resume, cfg.load_from = True, str(ckpt_dir / 'iter_2.pth')
    runner = Runner.from_cfg(cfg)
    hook, = [h for h in runner.hooks if isinstance(h, CheckpointLoadingHook)]
    seen = []
    original = hook.after_load_checkpoint

    def spy(runner, checkpoint):
        seen.append((safe_checkpoint_loading_enabled(),
                     type(safe_torch_load(noted)['note']).__name__))
        original(runner, checkpoint)

    hook.after_load_checkpoint = spy
    runner.train()  # resumes an MMEngine checkpoint under torch >= 2.6
    assert runner.iter == 4
    assert seen == [(True, 'ToyInterrupt')]
    assert CheckpointLoader._schemes[''] is load_from_local  # put back
    assert not safe_checkpoint_loading_enabled()
    with pytest.raises(UnsafeCheckpointError):  # the addition is gone
        safe_torch_load(noted)

"""Strict checkpoint matching: load_model_weights and CheckpointLoadingHook."""
import re

import pytest
import torch
from mmengine.runner.checkpoint import CheckpointLoader

from mdrl_plugin.engine import (
    CheckpointMismatchError,
    UnsafeCheckpointError,
    disable_safe_checkpoint_loading,
    load_model_weights,
    safe_checkpoint_loading_enabled,
)
from mdrl_plugin.engine.checkpoint import load_state_dict_checked
from mdrl_plugin.registry import MODELS

from toy_helpers import make_toy_cfg, run_toy


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
    # the hint, then PyTorch's own report (strict load_state_dict)
    assert str(info.value) == (
        f"Checkpoint '{path}' does not fit the model of config "
        "'configs/x.py'. It was most likely written for another config "
        '(another model, width or number of identities): use the config it '
        'was trained with. To load only the weights that fit and keep the '
        'others at their initialisation, pass --allow-partial-checkpoint '
        '(tools) or allow_partial=True. Error(s) in loading state_dict for '
        'ToyModel:\n\tsize mismatch for fc1.weight: copying a param with '
        'shape torch.Size([19, 8]) from checkpoint, the shape in current '
        'model is torch.Size([16, 8]).')
    assert info.value.filename == path
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, RuntimeError)  # as MMEngine's strict load
    assert torch.equal(model.fc1.weight, before)  # not copied


def test_missing_and_unexpected_keys_are_counted(tmp_path):
    # a checkpoint of a model with an extra (frozen) input layer, missing fc2
    sd = _toy(frozen_input_layer=True).state_dict()
    del sd['fc2.weight'], sd['fc2.bias']
    path = _save(tmp_path, 'baseline.pth', sd)
    with pytest.raises(CheckpointMismatchError) as info:
        load_model_weights(_toy(), path)
    assert info.value.report.splitlines()[1:] == [
        '\tMissing key(s) in state_dict: "fc2.weight", "fc2.bias". ',
        '\tUnexpected key(s) in state_dict: "frozen.weight", "frozen.bias". ']
    assert str(info.value).endswith(info.value.report)


def test_every_wrong_shaped_weight_is_named(tmp_path):
    src = _toy(in_dim=5, hidden=4, num_classes=2)
    path = _save(tmp_path, 'small.pth', src.state_dict())
    with pytest.raises(CheckpointMismatchError) as info:
        load_model_weights(_toy(), path)
    assert re.findall(r'size mismatch for (\S+): copying a param with shape '
                      r'torch.Size\(\[[\d, ]+\]\) from checkpoint',
                      str(info.value)) == [
        'fc1.weight', 'fc1.bias', 'fc2.weight', 'fc2.bias']


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
    # MMEngine's own report of a non-strict load
    assert caplog.messages == [
        'The model and loaded state dict do not match exactly\n\n'
        'size mismatch for fc1.weight: copying a param with shape '
        'torch.Size([19, 8]) from checkpoint, the shape in current model is '
        'torch.Size([16, 8]).\nunexpected key in source state_dict: '
        'extra.weight\n\nmissing keys in source state_dict: fc2.bias\n']


def test_a_batchnorm_state_dict_of_old_torch_loads_strictly():
    # no per-module versions and no counters, as before torch 0.4.1
    model = torch.nn.BatchNorm1d(3)
    sd = {k: v + 1 for k, v in model.state_dict().items()
          if k != 'num_batches_tracked'}
    load_state_dict_checked(model, sd, 'bn.pth')
    assert torch.equal(model.running_var, torch.full((3, ), 2.0))
    sd = model.state_dict()  # versioned: the counter must be there
    del sd['num_batches_tracked']
    with pytest.raises(CheckpointMismatchError, match='Missing key.*'
                       'num_batches_tracked'):
        load_state_dict_checked(model, sd, 'bn.pth')


def test_hook_refuses_load_from_that_does_not_fit(tmp_path):
    sd = _toy().state_dict()
    sd['fc2.weight'] = torch.zeros(4, 16)
    path = _save(tmp_path, 'other.pth', sd)
    hook = dict(type='CheckpointLoadingHook')
    cfg = make_toy_cfg(tmp_path / 'w', **{'train_cfg.max_iters': 2})
    cfg.custom_hooks = cfg.custom_hooks + [hook]
    cfg.load_from = path
    with pytest.raises(CheckpointMismatchError,
                       match=r'size mismatch for fc2.weight: copying a param '
                       r'with shape torch.Size\(\[4, 16\]\) from checkpoint, the '
                       r'shape in current model is torch.Size\(\[3, 16\]\)'):
        run_toy(cfg)
    assert not (tmp_path / 'w' / 'iter_2.pth').exists()  # never trained
    cfg = make_toy_cfg(tmp_path / 'p', **{'train_cfg.max_iters': 2})
    cfg.custom_hooks = cfg.custom_hooks + [dict(hook, allow_partial=True)]
    cfg.load_from = path
    run_toy(cfg)
    assert (tmp_path / 'p' / 'iter_2.pth').exists()


def test_hook_switches_the_safe_loader_on_for_the_run_only(tmp_path):
    from mmengine.runner import Runner
    from mmengine.runner.checkpoint import load_from_local

    from mdrl_plugin.engine import CheckpointLoadingHook, safe_torch_load

    import toy_components
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

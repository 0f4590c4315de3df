"""A user's own Runner on a shipped config loads checkpoints safely and
strictly: ``CheckpointLoadingHook`` comes with ``_base_/default_runtime.py``."""
import os
import os.path as osp
import pickle
import shlex
import uuid

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from mdrl_plugin.engine import (
    CheckpointLoadingHook,
    CheckpointMismatchError,
    UnsafeCheckpointError,
    disable_safe_checkpoint_loading,
    safe_checkpoint_loading_enabled,
    safe_torch_load,
)
from mdrl_plugin.registry import MODELS

from mdrl_test_utils import REPO_ROOT, shrink_config

#: An MMEngine checkpoint: its message hub holds HistoryBuffer and numpy.
OLD_CKPT = osp.join(REPO_ROOT, 'tests', 'data', 'toy_iter_2_v0.pth')


def _demo_cfg(bert_dir, data_root, work_dir, load_from):
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs', 'mdrl_demo.py'))
    shrink_config(cfg, bert_dir, data_root)
    cfg.work_dir, cfg.load_from = str(work_dir), str(load_from)
    cfg.experiment_name = f'user_{uuid.uuid4().hex}'
    return cfg


def test_users_runner_test_loads_the_plugins_checkpoint_strictly(
        tiny_bert_dir, tiny_pedes_root, tmp_path):
    disable_safe_checkpoint_loading()  # a fresh process: MMEngine's loader
    cfg = _demo_cfg(tiny_bert_dir, tiny_pedes_root, tmp_path / 'w',
                    tmp_path / 'best.pth')
    torch.manual_seed(1)
    trained = MODELS.build(cfg.model).state_dict()
    hub = safe_torch_load(OLD_CKPT)['message_hub']
    torch.save(dict(meta=dict(epoch=1, iter=2), state_dict=trained,
                    message_hub=hub), cfg.load_from)
    with pytest.raises(pickle.UnpicklingError, match='Weights only load'):
        torch.load(cfg.load_from)  # what a user's Runner used to hit

    runner = Runner.from_cfg(cfg)
    metrics = runner.test()
    assert sorted(metrics) == ['R1', 'R10', 'R5', 'mAP', 'mINP']
    for key, value in runner.model.state_dict().items():
        assert torch.equal(value, trained[key]), key
    assert not safe_checkpoint_loading_enabled()  # put back after the run

    # one wrong-shaped layer: the error tools/test.py reports
    qkv = next(k for k in trained if k.endswith('attn.qkv.weight'))
    rows, cols = trained[qkv].shape
    other = dict(trained, **{qkv: torch.zeros(rows + 3, cols)})
    bad = tmp_path / 'other_config.pth'
    torch.save(dict(meta=dict(epoch=1, iter=2), state_dict=other,
                    message_hub=hub), bad)
    cfg = _demo_cfg(tiny_bert_dir, tiny_pedes_root, tmp_path / 'b', bad)
    with pytest.raises(CheckpointMismatchError) as info:
        Runner.from_cfg(cfg).test()
    assert str(info.value).startswith(
        f"Checkpoint '{bad}' does not fit the model of config "
        f"'{cfg.filename}'. It was most likely written for another config")
    assert info.value.report == (
        'Error(s) in loading state_dict for MDRL:\n\tsize mismatch for '
        f'{qkv}: copying a param with shape torch.Size([{rows + 3}, {cols}]) '
        'from checkpoint, the shape in current model is '
        f'torch.Size([{rows}, {cols}]).')


class _RunsCode:
    """Unpickling this calls ``os.system``: it writes ``marker``."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {shlex.quote(self.marker)}', )


def test_default_runtime_hook_is_safe_and_strict():
    cfg = Config.fromfile(
        osp.join(REPO_ROOT, 'configs', '_base_', 'default_runtime.py'))
    ours = [h for h in cfg.custom_hooks
            if h['type'] == 'CheckpointLoadingHook']
    # no allow_unsafe, allow_partial or allow_globals: safe and strict
    assert ours == [dict(type='CheckpointLoadingHook')]
    hook = CheckpointLoadingHook(**{k: v for k, v in ours[0].items()
                                    if k != 'type'})
    assert (hook.allow_unsafe, hook.allow_partial, tuple(
        hook.allow_globals), hook.priority) == (False, False, (), 'VERY_HIGH')
    demo = Config.fromfile(osp.join(REPO_ROOT, 'configs', 'mdrl_demo.py'))
    assert [h for h in demo.custom_hooks
            if h['type'] == 'CheckpointLoadingHook'] == ours


def test_a_hostile_load_from_is_refused_by_a_shipped_config(
        tiny_bert_dir, tiny_pedes_root, tmp_path):
    disable_safe_checkpoint_loading()  # a fresh process: MMEngine's loader
    cfg = _demo_cfg(tiny_bert_dir, tiny_pedes_root, tmp_path / 'w',
                    tmp_path / 'evil.pth')
    marker = tmp_path / 'code_ran'
    torch.save(dict(meta=dict(epoch=1, iter=2),
                    state_dict=MODELS.build(cfg.model).state_dict(),
                    note=_RunsCode(str(marker))), cfg.load_from)
    runner = Runner.from_cfg(cfg)
    with pytest.raises(UnsafeCheckpointError) as info:
        runner.test()
    assert str(info.value).startswith(
        f"Refusing to load checkpoint '{cfg.load_from}': it contains the "
        'pickled global(s) posix.system, which the safe loader does not '
        'allow')
    assert not marker.exists()
    # the file is hostile indeed: full unpickling runs its code
    torch.load(cfg.load_from, weights_only=False)
    assert marker.exists()

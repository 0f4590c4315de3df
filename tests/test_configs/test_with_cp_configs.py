"""Every shipped paper config trains 2 iterations at a tiny size with
activation checkpointing (``with_cp=True``) on every block stack that takes
it, checkpointing in training and never in evaluation."""
import glob
import inspect
import os

import pytest
import torch
import torch.utils.checkpoint
from mmengine.config import Config

from mdrl_plugin.registry import MODELS

from mdrl_test_utils import REPO_ROOT, shrink_config, train_few_iterations

pytestmark = pytest.mark.slow  # trains every paper config

#: the shipped configs at the paper's size: every top-level one but the demos
PAPER_CONFIGS = sorted(
    os.path.basename(p) for p in glob.glob(os.path.join(REPO_ROOT, 'configs', '*.py'))
    if 'demo' not in os.path.basename(p))
STACKS = ('image_encoder', 'text_encoder', 'image_local', 'text_local',
          'cross_modal')


def test_the_paper_configs_are_all_here():
    assert {'mdrl_vit_bert_cuhk.py', 'mdrl_vit_bert_icfg.py',
            'mdrl_vit_bert_icfg_val_on_test.py', 'mdrl_vit_bert_rstp.py',
            'mdrl_vit_bert_sdm_cuhk.py', 'baseline_vit_bert_cuhk.py',
            'mdrl_resnet50_bert_cuhk.py'} <= set(PAPER_CONFIGS)


def enable_with_cp(model_cfg) -> list:
    """Set ``with_cp=True`` on every stack of ``model_cfg`` whose class takes
    it (as ``--cfg-options model.<stack>.with_cp=True`` would); their keys."""
    keys = []
    for key in STACKS:
        stack = model_cfg.get(key)
        if stack and 'with_cp' in inspect.signature(
                MODELS.get(stack['type'])).parameters:
            stack['with_cp'] = True
            keys.append(key)
    return keys


@pytest.mark.parametrize('name', PAPER_CONFIGS)
def test_paper_config_trains_with_cp(name, tiny_bert_dir, tiny_pedes_root,
                                     tmp_path, monkeypatch):
    cfg = Config.fromfile(os.path.join(REPO_ROOT, 'configs', name))
    if cfg.train_dataloader.dataset.type != 'CUHKPEDES':
        # ICFG-PEDES / RSTPReid configs: their model and schedule, the tiny
        # CUHK-PEDES-layout data (with_cp concerns the model only)
        cuhk = Config.fromfile(os.path.join(REPO_ROOT, 'configs',
                                            'mdrl_vit_bert_cuhk.py'))
        for split in ('train', 'val', 'test'):
            cfg[f'{split}_dataloader'] = cuhk[f'{split}_dataloader']
    shrink_config(cfg, tiny_bert_dir, tiny_pedes_root)
    keys = enable_with_cp(cfg.model)
    # every stack the config has takes with_cp (the ResNet-50 config's
    # TimmCNNEncoder too, through BackboneAdapter)
    assert keys == [k for k in STACKS if cfg.model.get(k)]
    assert keys[:2] == ['image_encoder', 'text_encoder']

    calls = []
    real = torch.utils.checkpoint.checkpoint

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.utils.checkpoint, 'checkpoint', counting)
    seen = {}  # stack: [(training, checkpoint calls during its forward)]
    # text_local=None builds the text DLL from image_local's config
    watched = keys + (['text_local'] if 'image_local' in keys
                      and 'text_local' not in keys else [])

    def watch(runner):
        for key in watched:
            module = getattr(runner.model, key)
            assert module.with_cp is True, key
            start = []
            module.register_forward_pre_hook(
                lambda *_, start=start: start.append(len(calls)))
            module.register_forward_hook(
                lambda m, *_, key=key, start=start: seen.setdefault(
                    key, []).append((m.training, len(calls) - start.pop())))

    # training validates at its last iteration: evaluation is watched too
    train_few_iterations(cfg, tmp_path, before_train=watch, validate=False)
    for key in watched:
        training = [n for is_training, n in seen[key] if is_training]
        evaluation = [n for is_training, n in seen[key] if not is_training]
        assert training and all(n > 0 for n in training), (key, seen[key])
        assert not any(evaluation), (key, seen[key])
        if key.endswith('encoder'):  # DLL and CIM may not run in evaluation
            assert evaluation, (key, seen[key])

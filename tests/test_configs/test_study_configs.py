"""The recipe study's arms (configs/study/, issue 24) each change exactly
the one choice they name, relative to the recipe they are compared with
(configs/study/demo_5e.py, the recipe the study started from, or
mean_epochs8.py, the chosen one), and build; the chosen arm is the demo
config."""
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.registry import DefaultScope

import mdrl_plugin  # noqa: F401 (registers the transforms)

from mdrl_test_utils import REPO_ROOT

STUDY = osp.join(REPO_ROOT, 'configs', 'study')


def _flat(d, prefix=''):
    """{dotted key: leaf} of nested dicts (lists are leaves)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f'{prefix}{k}.'))
        else:
            out[f'{prefix}{k}'] = v
    return out


def _load(path):
    return _flat(Config.fromfile(path).to_dict())


def _changed(name, base='demo_5e.py'):
    ref, arm = _load(osp.join(STUDY, base)), _load(osp.join(STUDY, name))
    return {k: arm.get(k) for k in ref.keys() | arm.keys()
            if ref.get(k) != arm.get(k)}


def test_the_reference_is_the_former_demo_recipe():
    changed = _changed(osp.join('..', 'mdrl_demo.py'))
    assert changed.pop('max_epochs') == 8
    assert changed.pop('train_cfg.max_epochs') == 8
    assert changed.pop('model.local_aggregation') == 'mean'
    cosine = changed.pop('param_scheduler')[1]
    assert (cosine['end'], cosine['T_max']) == (8, 7)
    assert changed == {}


def test_the_demo_is_the_chosen_arm():
    demo = _load(osp.join(REPO_ROOT, 'configs', 'mdrl_demo.py'))
    assert _load(osp.join(STUDY, 'mean_epochs8.py')) == demo
    assert _changed('mean_epochs8.py', base='epochs8.py') == {
        'model.local_aggregation': 'mean'}


@pytest.mark.parametrize('name, base, expected', [
    ('mean.py', 'demo_5e.py', {'model.local_aggregation': 'mean'}),
    ('idavg.py', 'mean_epochs8.py', {'model.loss_weights.id_global': 0.5,
                                     'model.loss_weights.id_local': 0.5}),
    ('lr2e4.py', 'mean_epochs8.py', {'optim_wrapper.optimizer.lr': 2e-4}),
    ('lr5e4.py', 'mean_epochs8.py', {'optim_wrapper.optimizer.lr': 5e-4}),
])
def test_arm_changes_one_choice(name, base, expected):
    assert _changed(name, base) == expected


def test_epochs_arm_moves_the_whole_schedule():
    changed = _changed('epochs8.py')
    assert changed.pop('max_epochs') == 8
    assert changed.pop('train_cfg.max_epochs') == 8
    cosine = changed.pop('param_scheduler')[1]
    assert (cosine['end'], cosine['T_max']) == (8, 7)
    assert changed == {}


def test_lr_arm_sets_new_modules_to_5x():
    changed = _changed('lr5x.py', base='mean_epochs8.py')
    assert changed.pop('new_module.lr_mult') == 5.0  # the config's variable
    prefix = 'optim_wrapper.paramwise_cfg.custom_keys.'
    assert changed == {prefix + f'{m}.lr_mult': 5.0 for m in (
        'text_encoder.lte', 'text_encoder.proj', 'image_encoder.proj',
        'image_local', 'text_local', 'cross_modal', 'classifier')}


def test_augmentation_arm_builds_and_only_adds_two_transforms():
    cfg = Config.fromfile(osp.join(STUDY, 'aug_epochs8.py'))
    demo = Config.fromfile(osp.join(STUDY, 'mean_epochs8.py'))
    pipeline = cfg.train_dataloader.dataset.pipeline
    assert [t['type'] for t in pipeline] == [
        t['type'] for t in demo.train_dataloader.dataset.pipeline][:3] + [
        'RandomCropPad', 'RandomErasing', 'PackTextImageInputs']
    with DefaultScope.overwrite_default_scope('mdrl_plugin'):
        built = Compose(pipeline)
    assert [type(t).__name__ for t in built.transforms][3:5] == [
        'RandomCropPad', 'RandomErasing']


def test_augmentation_on_the_chosen_recipe_changes_only_the_pipeline():
    changed = _changed('aug_epochs8.py', base='mean_epochs8.py')
    assert set(changed) == {'train_pipeline',
                            'train_dataloader.dataset.pipeline'}
    assert changed['train_pipeline'] == changed[
        'train_dataloader.dataset.pipeline']

from types import SimpleNamespace

import pytest

from mdrl_plugin.registry import HOOKS


def fake_runner(model_classes, data_classes):
    dataset = SimpleNamespace(metainfo=dict(num_classes=data_classes, split='train'))
    return SimpleNamespace(model=SimpleNamespace(num_classes=model_classes),
                           train_dataloader=SimpleNamespace(dataset=dataset))


def test_matching_numbers_pass():
    HOOKS.build(dict(type='NumClassesCheckHook')).before_train(fake_runner(6, 6))


@pytest.mark.parametrize('model_classes', [5, 11003])
def test_mismatch_stops_with_the_config_key(model_classes):
    hook = HOOKS.build(dict(type='NumClassesCheckHook'))
    with pytest.raises(ValueError, match=rf'model.num_classes={model_classes} but the '
                       r"training dataset \(SimpleNamespace, split 'train'\) has 6 "
                       r'identities: set model.num_classes=6'):
        hook.before_train(fake_runner(model_classes, 6))


def test_the_demo_config_trips_it_on_another_dataset(tiny_bert_dir, tiny_pedes_root, tmp_path):
    """Pointing the demo config at other data without changing num_classes."""
    import os

    from mmengine.config import Config
    from mmengine.runner import Runner

    from mdrl_test_utils import REPO_ROOT, shrink_config
    cfg = Config.fromfile(os.path.join(REPO_ROOT, 'configs', 'mdrl_demo.py'))
    shrink_config(cfg, tiny_bert_dir, tiny_pedes_root)
    cfg.model.num_classes = 200  # the demo's, but the tiny data has 6
    cfg.work_dir = str(tmp_path)
    with pytest.raises(ValueError, match='model.num_classes=200 .* has 6 identities'):
        Runner.from_cfg(cfg).train()

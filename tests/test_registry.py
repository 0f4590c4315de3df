from mmengine.registry import MODELS as ROOT_MODELS

import mdrl_plugin  # noqa: F401
from mdrl_plugin.registry import DATASETS, METRICS, MODELS, TRANSFORMS


def test_child_registries_have_scope_and_parent():
    for reg in (MODELS, DATASETS, METRICS, TRANSFORMS):
        assert reg.scope == 'mdrl_plugin'
        assert reg.parent is not None
    assert MODELS.parent is ROOT_MODELS
    assert 'mdrl_plugin' in ROOT_MODELS.children


def test_other_projects_use_components_by_scoped_type(tiny_bert_dir, tiny_pedes_root):
    """A config outside the plugin: custom_imports + the mdrl_plugin. prefix,
    built through MMEngine's root registries without a default scope."""
    import torch
    from mmengine.config import Config
    from mmengine.registry import DATASETS as ROOT_DATASETS
    from mmengine.registry import METRICS as ROOT_METRICS
    from mmengine.utils import import_modules_from_strings

    from mdrl_test_utils import tiny_mdrl_cfg
    cfg = Config(dict(
        custom_imports=dict(imports=['mdrl_plugin'], allow_failed_imports=False),
        model=dict(tiny_mdrl_cfg(tiny_bert_dir), type='mdrl_plugin.MDRL'),
        dataset=dict(type='mdrl_plugin.CUHKPEDES', data_root=tiny_pedes_root,
                     split='test', pipeline=[
                         dict(type='mdrl_plugin.LoadPersonImage'),
                         dict(type='Resize', scale=(16, 32), keep_ratio=False),
                         dict(type='mdrl_plugin.PackTextImageInputs')]),
        metric=dict(type='mdrl_plugin.PersonRetrievalMetric')))
    import_modules_from_strings(**cfg.custom_imports)
    model = ROOT_MODELS.build(cfg.model)
    dataset = ROOT_DATASETS.build(cfg.dataset)
    metric = ROOT_METRICS.build(cfg.metric)
    assert type(model).__name__ == 'MDRL'
    assert type(model.image_local).__name__ == 'DisorderedLocalLearning'
    sample = dataset[0]
    assert sample['inputs'].shape == (3, 32, 16) and len(sample['data_samples'].texts) == 2
    model.eval()
    with torch.no_grad():
        batch = model.data_preprocessor(
            dict(inputs=[dataset[i]['inputs'] for i in range(2)],
                 data_samples=[dataset[i]['data_samples'] for i in range(2)]))
        out = model(**batch, mode='predict')
    metric.process({}, [s.to_dict() for s in out])
    assert set(metric.evaluate(2)) == {'R1', 'R5', 'R10', 'mAP', 'mINP'}

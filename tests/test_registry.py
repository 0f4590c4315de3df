import mdrl_plugin  # noqa: F401
from mmengine.registry import MODELS as ROOT_MODELS

from mdrl_plugin.registry import DATASETS, METRICS, MODELS, TRANSFORMS


def test_child_registries_have_scope_and_parent():
    for reg in (MODELS, DATASETS, METRICS, TRANSFORMS):
        assert reg.scope == 'mdrl_plugin'
        assert reg.parent is not None
    assert MODELS.parent is ROOT_MODELS
    assert 'mdrl_plugin' in ROOT_MODELS.children

"""Registries of mdrl-plugin.

Every registry here is a child of MMEngine's root registry of the same name, with
scope ``mdrl_plugin``. Configs that set ``default_scope='mdrl_plugin'`` find the
components by their bare names; configs of other projects load the plugin with
``custom_imports=dict(imports=['mdrl_plugin'])`` and write ``mdrl_plugin.<Name>``.
"""
from mmengine.registry import DATA_SAMPLERS as MMENGINE_DATA_SAMPLERS
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import FUNCTIONS as MMENGINE_FUNCTIONS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import \
    OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import Registry

__all__ = [
    'MODELS', 'DATASETS', 'TRANSFORMS', 'METRICS', 'DATA_SAMPLERS', 'HOOKS',
    'FUNCTIONS', 'OPTIM_WRAPPER_CONSTRUCTORS'
]

#: Models: encoders, necks, heads, losses, data preprocessors, retrievers.
MODELS = Registry(
    'model', parent=MMENGINE_MODELS, scope='mdrl_plugin',
    locations=['mdrl_plugin.models'])
#: PEDES-style datasets.
DATASETS = Registry(
    'dataset', parent=MMENGINE_DATASETS, scope='mdrl_plugin',
    locations=['mdrl_plugin.datasets'])
#: Data transforms (mmcv-style).
TRANSFORMS = Registry(
    'transform', parent=MMENGINE_TRANSFORMS, scope='mdrl_plugin',
    locations=['mdrl_plugin.datasets'])
#: Evaluation metrics.
METRICS = Registry(
    'metric', parent=MMENGINE_METRICS, scope='mdrl_plugin',
    locations=['mdrl_plugin.evaluation'])
#: Samplers for dataloaders.
DATA_SAMPLERS = Registry(
    'data sampler', parent=MMENGINE_DATA_SAMPLERS, scope='mdrl_plugin',
    locations=['mdrl_plugin.datasets'])
#: Runner hooks.
HOOKS = Registry(
    'hook', parent=MMENGINE_HOOKS, scope='mdrl_plugin',
    locations=['mdrl_plugin.engine'])
#: Functions such as collate functions.
FUNCTIONS = Registry(
    'function', parent=MMENGINE_FUNCTIONS, scope='mdrl_plugin',
    locations=['mdrl_plugin.datasets'])
#: Optimizer wrapper constructors.
OPTIM_WRAPPER_CONSTRUCTORS = Registry(
    'optimizer wrapper constructor',
    parent=MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS,
    scope='mdrl_plugin',
    locations=['mdrl_plugin.engine'])

# Appended by the engine part: optimizer wrappers (mixed precision on CPU/GPU).
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS  # noqa: E402,E501

#: Optimizer wrappers.
OPTIM_WRAPPERS = Registry(
    'optim_wrapper',
    parent=MMENGINE_OPTIM_WRAPPERS,
    scope='mdrl_plugin',
    locations=['mdrl_plugin.engine'])
__all__ += ['OPTIM_WRAPPERS']

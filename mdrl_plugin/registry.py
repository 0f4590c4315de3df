"""Registries of mdrl-plugin: children of MMEngine's root registries with
scope ``mdrl_plugin``. Configs with ``default_scope='mdrl_plugin'`` use bare
names; other projects import the plugin (``custom_imports``) and write
``mdrl_plugin.<Name>``."""
from typing import List, Optional

from mmengine import registry as root
from mmengine.registry import Registry

__all__ = [
    'MODELS', 'DATASETS', 'TRANSFORMS', 'DATA_SAMPLERS', 'METRICS', 'HOOKS',
    'FUNCTIONS', 'OPTIM_WRAPPERS', 'OPTIM_WRAPPER_CONSTRUCTORS', 'LOOPS',
    'OPTIMIZERS', 'PARAM_SCHEDULERS', 'EVALUATOR', 'MODEL_WRAPPERS',
    'VISUALIZERS', 'VISBACKENDS', 'LOG_PROCESSORS', 'WEIGHT_INITIALIZERS'
]


def _child(parent: Registry,
           locations: Optional[List[str]] = None) -> Registry:
    return Registry(parent.name, parent=parent, scope='mdrl_plugin',
                    locations=locations or [])


# children holding the plugin's components (found in these modules)
MODELS = _child(root.MODELS, ['mdrl_plugin.models'])
DATASETS = _child(root.DATASETS, ['mdrl_plugin.datasets'])
TRANSFORMS = _child(root.TRANSFORMS, ['mdrl_plugin.datasets'])
DATA_SAMPLERS = _child(root.DATA_SAMPLERS, ['mdrl_plugin.datasets'])
METRICS = _child(root.METRICS, ['mdrl_plugin.evaluation'])
HOOKS = _child(root.HOOKS, ['mdrl_plugin.engine'])
OPTIM_WRAPPERS = _child(root.OPTIM_WRAPPERS, ['mdrl_plugin.engine'])
OPTIM_WRAPPER_CONSTRUCTORS = _child(root.OPTIM_WRAPPER_CONSTRUCTORS,
                                    ['mdrl_plugin.engine'])
# scope-only children: MMEngine's own components, found without a warning
FUNCTIONS = _child(root.FUNCTIONS)
LOOPS = _child(root.LOOPS)
OPTIMIZERS = _child(root.OPTIMIZERS)
PARAM_SCHEDULERS = _child(root.PARAM_SCHEDULERS)
EVALUATOR = _child(root.EVALUATOR)
MODEL_WRAPPERS = _child(root.MODEL_WRAPPERS)
VISUALIZERS = _child(root.VISUALIZERS)
VISBACKENDS = _child(root.VISBACKENDS)
LOG_PROCESSORS = _child(root.LOG_PROCESSORS)
WEIGHT_INITIALIZERS = _child(root.WEIGHT_INITIALIZERS)

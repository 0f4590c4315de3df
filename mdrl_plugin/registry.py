"""Registries of mdrl-plugin.

Every registry here is a child of MMEngine's root registry of the same name,
with scope ``mdrl_plugin``. Configs that set ``default_scope='mdrl_plugin'``
find the components by their bare names; configs of other projects load the
plugin with ``custom_imports=dict(imports=['mdrl_plugin'])`` and write
``mdrl_plugin.<Name>``.

Registries that hold no component of the plugin (loops, optimizers, ...) exist
so that MMEngine's look-ups under the ``mdrl_plugin`` scope find a registry
tree and fall back to MMEngine's components without a warning.
"""
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


#: Models: encoders, necks, heads, losses, data preprocessors, retrievers.
MODELS = _child(root.MODELS, ['mdrl_plugin.models'])
#: PEDES-style datasets.
DATASETS = _child(root.DATASETS, ['mdrl_plugin.datasets'])
#: Data transforms (mmcv-style).
TRANSFORMS = _child(root.TRANSFORMS, ['mdrl_plugin.datasets'])
#: Samplers for dataloaders.
DATA_SAMPLERS = _child(root.DATA_SAMPLERS, ['mdrl_plugin.datasets'])
#: Evaluation metrics.
METRICS = _child(root.METRICS, ['mdrl_plugin.evaluation'])
#: Runner hooks.
HOOKS = _child(root.HOOKS, ['mdrl_plugin.engine'])
#: Optimizer wrappers (mixed precision on CPU and GPU).
OPTIM_WRAPPERS = _child(root.OPTIM_WRAPPERS, ['mdrl_plugin.engine'])
#: Optimizer wrapper constructors.
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

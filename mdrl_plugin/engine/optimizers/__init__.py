from .mixed_precision_optim_wrapper import MixedPrecisionOptimWrapper
from .trainable_params_constructor import (
    TrainableParamsOptimWrapperConstructor,
)

__all__ = [
    'MixedPrecisionOptimWrapper', 'TrainableParamsOptimWrapperConstructor'
]

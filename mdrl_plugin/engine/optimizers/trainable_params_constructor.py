"""Optimizer wrapper constructor that leaves frozen parameters out."""
import logging
from typing import Iterator

import torch.nn as nn
from mmengine.logging import MMLogger, print_log
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper

from mdrl_plugin.registry import OPTIM_WRAPPER_CONSTRUCTORS

__all__ = ['TrainableParamsOptimWrapperConstructor']

_SKIP_MESSAGE = 'is skipped since its requires_grad=False'


class _TrainableParameters:
    """A stand-in module whose ``parameters()`` yields trainable ones only."""

    def __init__(self, module: nn.Module) -> None:
        self._module = module

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]:
        return (p for p in self._module.parameters(recurse=recurse)
                if p.requires_grad)


class _DropSkipMessages(logging.Filter):

    def filter(self, record: logging.LogRecord) -> bool:
        return _SKIP_MESSAGE not in record.getMessage()


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class TrainableParamsOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """``DefaultOptimWrapperConstructor`` that optimises trainable params only.

    Parameters with ``requires_grad=False`` (MDRL's frozen BERT) are not given
    to the optimizer, with or without ``paramwise_cfg``: the optimizer keeps
    no state for them and weight decay never touches them. Everything else
    (``paramwise_cfg`` with ``custom_keys``, ``bias_decay_mult``,
    ``norm_decay_mult``...) behaves as in MMEngine. The frozen set is taken
    when the optimizer is built: parameters unfrozen later are not optimised.

    Use it with::

        optim_wrapper = dict(
            constructor='TrainableParamsOptimWrapperConstructor',
            optimizer=dict(type='SGD', lr=7e-5, momentum=0.9))

    Args:
        optim_wrapper_cfg: The optimizer wrapper config.
        paramwise_cfg: Parameter-wise options, as in MMEngine.
    """

    def __call__(self, model: nn.Module) -> OptimWrapper:
        """Build the optimizer wrapper over the trainable parameters.

        Args:
            model: The model (a wrapped model's ``.module`` is used).

        Returns:
            The optimizer wrapper.

        Raises:
            ValueError: The model has no trainable parameter.
        """
        if hasattr(model, 'module'):
            model = model.module
        frozen = [(n, p) for n, p in model.named_parameters()
                  if not p.requires_grad]
        if not any(p.requires_grad for p in model.parameters()):
            raise ValueError(
                'TrainableParamsOptimWrapperConstructor: every parameter of '
                f'{type(model).__name__} has requires_grad=False; there is '
                'nothing to optimise.')
        if not self.paramwise_cfg:
            optim_wrapper = super().__call__(_TrainableParameters(model))
        else:
            logger = MMLogger.get_current_instance()
            log_filter = _DropSkipMessages()
            logger.addFilter(log_filter)
            try:
                optim_wrapper = super().__call__(model)
            finally:
                logger.removeFilter(log_filter)
        if frozen:
            heads = sorted({name.split('.')[0] for name, _ in frozen})
            print_log(
                f'TrainableParamsOptimWrapperConstructor: left '
                f'{len(frozen)} frozen parameter tensor(s) '
                f'({sum(p.numel() for _, p in frozen)} values, under '
                f'{", ".join(heads)}) out of the optimizer.',
                logger='current')
        return optim_wrapper

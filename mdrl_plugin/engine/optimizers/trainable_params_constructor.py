"""Optimizer wrapper constructor that leaves frozen parameters out."""
import logging
from types import SimpleNamespace

import torch.nn as nn
from mmengine.logging import MMLogger, print_log
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper

from mdrl_plugin.registry import OPTIM_WRAPPER_CONSTRUCTORS


class _DropSkipMessages(logging.Filter):

    def filter(self, record: logging.LogRecord) -> bool:
        return 'is skipped since its requires_grad=False' not in \
            record.getMessage()


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class TrainableParamsOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """MMEngine's default constructor over the trainable parameters only.

    Without ``paramwise_cfg`` MMEngine gives frozen parameters (MDRL's BERT)
    to the optimizer; with it, it logs a warning per frozen parameter. Here
    they are left out with one summary line. Select it with
    ``optim_wrapper=dict(constructor='TrainableParamsOptimWrapperConstructor',
    ...)``.
    """

    def __call__(self, model: nn.Module) -> OptimWrapper:
        """Build the optimizer wrapper.

        Args:
            model: The model (a wrapper's ``.module`` is used).

        Returns:
            The optimizer wrapper.

        Raises:
            ValueError: No parameter is trainable.
        """
        model = getattr(model, 'module', model)
        frozen = [(n, p) for n, p in model.named_parameters()
                  if not p.requires_grad]
        if len(frozen) == len(list(model.parameters())):
            raise ValueError(
                f'{type(self).__name__}: every parameter of '
                f'{type(model).__name__} has requires_grad=False; there is '
                'nothing to optimise.')
        if not self.paramwise_cfg:
            wrapper = super().__call__(SimpleNamespace(parameters=lambda: (
                p for p in model.parameters() if p.requires_grad)))
        else:
            logger, log_filter = MMLogger.get_current_instance(), \
                _DropSkipMessages()
            logger.addFilter(log_filter)
            try:
                wrapper = super().__call__(model)
            finally:
                logger.removeFilter(log_filter)
        if frozen:
            heads = ', '.join(sorted({n.split('.')[0] for n, _ in frozen}))
            print_log(
                f'{type(self).__name__}: left {len(frozen)} frozen parameter '
                f'tensor(s) ({sum(p.numel() for _, p in frozen)} values, '
                f'under {heads}) out of the optimizer.', logger='current')
        return wrapper

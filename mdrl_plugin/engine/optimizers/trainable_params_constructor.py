"""Optimizer wrapper constructor that leaves frozen parameters out."""
from types import SimpleNamespace

import torch.nn as nn
from mmengine.logging import MMLogger, print_log
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper

from mdrl_plugin.registry import OPTIM_WRAPPER_CONSTRUCTORS


def _not_a_skip_message(record) -> bool:
    return 'skipped since its requires_grad=False' not in record.getMessage()


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class TrainableParamsOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """MMEngine's default constructor over the trainable parameters only:
    frozen ones (MDRL's BERT) stay out, with one log line, not one a tensor."""

    def __call__(self, model: nn.Module) -> OptimWrapper:
        """Build the optimizer wrapper of ``model`` (or of its ``.module``);
        ``ValueError`` if no parameter is trainable."""
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
            logger = MMLogger.get_current_instance()
            logger.addFilter(_not_a_skip_message)
            try:
                wrapper = super().__call__(model)
            finally:
                logger.removeFilter(_not_a_skip_message)
        if frozen:
            heads = ', '.join(sorted({n.split('.')[0] for n, _ in frozen}))
            print_log(
                f'{type(self).__name__}: left {len(frozen)} frozen parameter '
                f'tensor(s) ({sum(p.numel() for _, p in frozen)} values, '
                f'under {heads}) out of the optimizer.', logger='current')
        return wrapper

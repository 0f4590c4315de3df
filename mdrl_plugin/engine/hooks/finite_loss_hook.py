"""Stop training as soon as a loss term becomes NaN or infinite."""
import math
from typing import Dict, Optional, Sequence, Union

import torch
from mmengine.dist import all_gather_object, all_reduce, get_world_size
from mmengine.hooks import Hook

from mdrl_plugin.registry import HOOKS

__all__ = ['FiniteLossHook', 'NonFiniteLossError']


class NonFiniteLossError(RuntimeError):
    """A training loss became NaN or infinite."""


def _non_finite_terms(outputs: Optional[dict], key_pattern: str
                      ) -> Dict[str, float]:
    bad: Dict[str, float] = {}
    if not isinstance(outputs, dict):
        return bad
    for name, value in outputs.items():
        if key_pattern not in name:
            continue
        if isinstance(value, torch.Tensor):
            value = value.detach().float()
            if value.numel() == 0 or bool(torch.isfinite(value).all()):
                continue
            bad[name] = float(value[~torch.isfinite(value)].flatten()[0])
        elif isinstance(value, (int, float)) and not math.isfinite(value):
            bad[name] = float(value)
    return bad


@HOOKS.register_module()
class FiniteLossHook(Hook):
    """Raise :class:`NonFiniteLossError` when a logged loss is NaN or inf.

    It checks the model's ``train_step`` outputs (the logged loss terms: every
    key that contains ``key_pattern``) after each iteration. It runs with
    priority ``'HIGH'``, before the ``LoggerHook`` and long before the
    ``CheckpointHook`` (``'VERY_LOW'``), so the diverged weights are never
    saved and the latest checkpoint stays the last good one. In distributed
    training the verdict is all-reduced, so every rank stops together instead
    of the others hanging in the next collective.

    Args:
        key_pattern: Output keys containing this string are checked.
        check_distributed: All-reduce the verdict across ranks.
    """

    priority = 'HIGH'

    def __init__(self, key_pattern: str = 'loss',
                 check_distributed: bool = True) -> None:
        if not isinstance(key_pattern, str) or not key_pattern:
            raise TypeError('FiniteLossHook: key_pattern must be a non-empty '
                            f'str, got {key_pattern!r}')
        self.key_pattern = key_pattern
        self.check_distributed = check_distributed

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: Union[dict, tuple, list, None] = None,
                         outputs: Optional[dict] = None) -> None:
        """Check the loss terms of this iteration.

        Args:
            runner: The runner.
            batch_idx: Index of the batch in the epoch.
            data_batch: The batch.
            outputs: The ``train_step`` outputs (logged loss terms).

        Raises:
            NonFiniteLossError: Some loss term is NaN or infinite on some rank.
        """
        bad = _non_finite_terms(outputs, self.key_pattern)
        per_rank: Sequence[Dict[str, float]] = [bad]
        if self.check_distributed and get_world_size() > 1:
            flag = torch.tensor([1.0 if bad else 0.0])
            all_reduce(flag, op='sum')
            if float(flag) == 0:
                return
            per_rank = all_gather_object(bad)
        elif not bad:
            return
        iteration = runner.iter + 1
        details = []
        for rank, terms in enumerate(per_rank):
            if terms:
                where = f' on rank {rank}' if len(per_rank) > 1 else ''
                details.append(', '.join(f'{k}={v}' for k, v in terms.items())
                               + where)
        last_ckpt = runner.message_hub.get_info('last_ckpt')
        raise NonFiniteLossError(
            f'Non-finite loss at iteration {iteration} (epoch '
            f'{runner.epoch + 1}): {"; ".join(details)}. Training was stopped '
            'before a checkpoint of the diverged weights could be saved; the '
            'last checkpoint is '
            f'{repr(last_ckpt) if last_ckpt else "none"}. Lower the learning '
            'rate, enable gradient clipping (optim_wrapper.clip_grad) or '
            'check the inputs of this iteration.')

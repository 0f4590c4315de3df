"""Stop training at the first NaN or infinite loss term."""
import torch
from mmengine.dist import all_gather_object, all_reduce, get_world_size
from mmengine.hooks import Hook

from mdrl_plugin.registry import HOOKS


class NonFiniteLossError(RuntimeError):
    """A training loss became NaN or infinite."""


@HOOKS.register_module()
class FiniteLossHook(Hook):
    """Raise :class:`NonFiniteLossError` naming each NaN/inf loss term.
    Unlike ``CheckInvalidLossHook``: every term, a verdict shared by all ranks
    (none hangs), and before ``CheckpointHook`` saves the weights.

    Args:
        key_pattern: Output keys containing it are checked.
        check_distributed: All-reduce the verdict across ranks.
    """

    priority = 'HIGH'

    def __init__(self, key_pattern: str = 'loss',
                 check_distributed: bool = True) -> None:
        if not isinstance(key_pattern, str) or not key_pattern:
            raise TypeError('FiniteLossHook: key_pattern must be a non-empty '
                            f'str, got {key_pattern!r}')
        self.key_pattern, self.check_distributed = (key_pattern,
                                                    check_distributed)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        """Check this iteration's loss terms on every rank."""
        bad = {}
        for name, value in (outputs or {}).items():
            if self.key_pattern in name and isinstance(
                    value, (torch.Tensor, int, float)):
                value = torch.as_tensor(value).detach().float().flatten()
                value = value[~torch.isfinite(value)]
                if len(value):
                    bad[name] = float(value[0])
        per_rank = [bad]
        if self.check_distributed and get_world_size() > 1:
            flag = torch.tensor([float(bool(bad))])
            all_reduce(flag, op='sum')
            per_rank = all_gather_object(bad) if float(flag) else [{}]
        details = [', '.join(f'{k}={v}' for k, v in terms.items()) +
                   (f' on rank {rank}' if len(per_rank) > 1 else '')
                   for rank, terms in enumerate(per_rank) if terms]
        if details:
            last = runner.message_hub.get_info('last_ckpt')
            raise NonFiniteLossError(
                f'Non-finite loss at iteration {runner.iter + 1} (epoch '
                f'{runner.epoch + 1}): {"; ".join(details)}. Training was '
                'stopped before a checkpoint of the diverged weights could '
                f'be saved; the last checkpoint is '
                f'{repr(last) if last else "none"}. Lower the learning rate, '
                'enable gradient clipping (optim_wrapper.clip_grad) or check '
                'the inputs of this iteration.')

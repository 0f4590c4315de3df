"""Resume a run exactly as if it had never stopped: the RNG states too."""
import logging
import random
from itertools import islice
from typing import Any, Dict, Iterator

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_rank, get_world_size
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import print_log
from mmengine.runner import EpochBasedTrainLoop

from mdrl_plugin.registry import HOOKS


def get_rng_state() -> Dict[str, Any]:
    """Python's, numpy's, torch's (CUDA's once used) RNG states, as
    ``weights_only``-loadable containers and tensors."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = dict(
        python=dict(version=version, internal=list(internal), gauss=gauss),
        numpy=dict(bit_generator=str(name), pos=int(pos),
                   keys=torch.from_numpy(keys.astype(np.int64)),
                   has_gauss=int(has_gauss), cached_gaussian=float(cached)),
        torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    """Restore :func:`get_rng_state`'s ``state`` (CUDA's if as many GPUs)."""
    if missing := [k for k in ('python', 'numpy', 'torch') if k not in state]:
        raise KeyError(f'RNG state lacks the {missing[0]!r} entry; got keys '
                       f'{sorted(state)}')
    py, npy, cuda = state['python'], state['numpy'], state.get('cuda')
    random.setstate((py['version'], tuple(py['internal']), py['gauss']))
    keys = torch.as_tensor(npy['keys']).cpu().numpy().astype(np.uint32)
    np.random.set_state((npy['bit_generator'], keys, npy['pos'],
                         npy['has_gauss'], npy['cached_gaussian']))
    torch.set_rng_state(state['torch'].cpu())
    if cuda and torch.cuda.is_available() and \
            len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda])


def _restore_before(iterator: Iterator, at: int, state: dict) -> Iterator:
    """``iterator``'s items, with ``state`` restored before the ``at``-th."""
    yield from islice(iterator, at)
    set_rng_state(state)
    yield from iterator


def _warn(message: str) -> None:
    print_log(f'ExactResumeHook: {message}', logger='current',
              level=logging.WARNING)


@HOOKS.register_module()
class ExactResumeHook(Hook):
    """Save every rank's RNG states (which MMEngine does not restore) in
    checkpoints; restore them at the first batch after an
    ``IterBasedTrainLoop``'s fast-forward, or at the next epoch of an
    ``EpochBasedTrainLoop`` (only epoch-end checkpoints resume exactly).
    Priority ``'LOW'``: gathered before ``CheckpointHook`` saves on rank 0.

    Args:
        neutral_validation: Give training its RNG states back after each
            validation (a resumed run skips the one after its checkpoint).
    """

    priority = 'LOW'

    def __init__(self, neutral_validation: bool = True) -> None:
        self.neutral_validation = neutral_validation
        # the loaded checkpoint's; all ranks' at validation / before a save
        self._loaded = self._val_states = self._gathered = None

    def _gather_if_saving(self, runner, by_epoch: bool) -> None:
        for hook in runner.hooks if get_world_size() > 1 else ():
            if isinstance(hook, CheckpointHook) and hook.by_epoch == by_epoch:
                every, last = ((hook.every_n_epochs, hook.is_last_train_epoch)
                               if by_epoch else (hook.every_n_train_iters,
                                                 hook.is_last_train_iter))
                if every(runner, hook.interval, hook.save_begin) or (
                        hook.save_last and last(runner)):
                    self._gathered = all_gather_object(get_rng_state())

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        """Gather all ranks' states before an iteration checkpoint."""
        self._gather_if_saving(runner, by_epoch=False)

    def after_train_epoch(self, runner) -> None:
        """Gather all ranks' states before an epoch checkpoint."""
        self._gather_if_saving(runner, by_epoch=True)

    def before_val(self, runner) -> None:
        """Remember the training RNG states."""
        if self.neutral_validation or get_world_size() > 1:
            self._val_states = all_gather_object(get_rng_state())

    def after_val(self, runner) -> None:
        """Give training its RNG states back."""
        if self._val_states is not None and self.neutral_validation:
            set_rng_state(self._val_states[get_rank()])
        self._val_states = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Put every rank's RNG states into the checkpoint."""
        states = self._val_states or self._gathered  # e.g. a best checkpoint
        if states is None and get_world_size() > 1:
            _warn('no gathered RNG states for this checkpoint (not saved by '
                  "CheckpointHook?); storing rank 0's only.")
        states, self._gathered = states or [get_rng_state()], None
        checkpoint['rng_state'] = dict(world_size=len(states), states=states)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Keep the states until we know whether the run resumes."""
        self._loaded = dict(rng=checkpoint.get('rng_state'),
                            iter=(checkpoint.get('meta') or {}).get('iter'))

    def before_train_epoch(self, runner) -> None:
        """Arrange the restore when this run resumed."""
        loaded, self._loaded = self._loaded, None
        # `load_from` without resume leaves the counters at 0
        if loaded is None or runner.iter != loaded['iter'] or not runner.iter:
            return
        states = (loaded['rng'] or {}).get('states', [])
        if len(states) != get_world_size():
            return _warn(
                f'the resumed checkpoint holds RNG states of {len(states)} '
                f'rank(s) but this run has {get_world_size()}: the resumed '
                'run will not reproduce the uninterrupted one exactly.')
        loop, state = runner.train_loop, states[get_rank()]
        if hasattr(loop, 'dataloader_iterator'):  # IterBasedTrainLoop
            loop.dataloader_iterator = _restore_before(
                loop.dataloader_iterator, runner.iter, state)
            return
        batches = len(loop.dataloader) if isinstance(
            loop, EpochBasedTrainLoop) else 0
        if batches and runner.iter % batches:
            _warn('resuming EpochBasedTrainLoop from a mid-epoch checkpoint '
                  f'(iter {runner.iter}, {batches} batches per epoch). '
                  'MMEngine restarts the epoch from its first batch, so the '
                  'resume is not exact; save checkpoints at epoch ends or use '
                  'IterBasedTrainLoop.')
        set_rng_state(state)

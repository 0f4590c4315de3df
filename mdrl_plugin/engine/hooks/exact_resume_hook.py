"""Make ``resume`` continue a run exactly as if it had never stopped.

What MMEngine 0.10.7 restores on resume: the model, optimizer, parameter
schedulers, message hub and the loop counters (``epoch``/``iter`` from the
checkpoint's meta). What it does not restore: the Python, numpy and torch
random number generator states, which random transforms (``RandomFlip``),
dropout and random ops inside the network (the disordered token shuffle of
MDRL) consume. The loops also differ:

* ``IterBasedTrainLoop`` fast-forwards the dataloader by ``iter`` batches on
  resume (loading and transforming them, which consumes the data RNG), so a
  mid-epoch checkpoint resumes at the right batch;
* ``EpochBasedTrainLoop`` restarts the checkpoint's epoch from its first
  batch, so only checkpoints saved at the end of an epoch resume exactly.

This hook stores the RNG states in every checkpoint it sees being saved
(``before_save_checkpoint``) and restores them at the point where the
uninterrupted run would have continued: for ``IterBasedTrainLoop`` just before
the first batch after the fast-forward, for ``EpochBasedTrainLoop`` at the
start of the next epoch. It also makes validation during training
RNG-neutral (states saved in ``before_val`` and restored in ``after_val``),
because a resumed run does not repeat the validation that followed the saved
checkpoint.

Together with ``randomness=dict(seed=S, deterministic=True)`` a killed and
resumed run then ends with the same weights and metrics as an uninterrupted
one. Data-loader workers seed themselves from the seed, rank and worker id
(MMEngine's ``worker_init_fn``); with ``num_workers > 0`` use
``persistent_workers=False`` for epoch-based training so that the workers'
random streams restart every epoch in both runs.
"""
import logging
from typing import Any, Dict, Iterator, List, Optional

from mmengine.dist import all_gather_object, get_rank, get_world_size
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import print_log
from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop

from mdrl_plugin.registry import HOOKS
from ..rng import get_rng_state, set_rng_state

__all__ = ['ExactResumeHook']

#: Key of the RNG states in the checkpoint dict.
CHECKPOINT_KEY = 'rng_state'


class _RestoreBeforeFetch:
    """Iterator wrapper that restores RNG states before fetch number ``at``.

    ``IterBasedTrainLoop.run`` calls ``next`` ``iter`` times to fast-forward
    and then once more for the first batch it trains on; the states are
    restored just before that call.
    """

    def __init__(self, iterator: Iterator, at: int,
                 state: Dict[str, Any]) -> None:
        self._iterator = iterator
        self._at = at
        self._count = 0
        self._state: Optional[Dict[str, Any]] = state

    def __iter__(self) -> '_RestoreBeforeFetch':
        return self

    def __next__(self) -> Any:
        if self._state is not None and self._count == self._at:
            set_rng_state(self._state)
            self._state = None
        self._count += 1
        return next(self._iterator)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._iterator, name)


@HOOKS.register_module()
class ExactResumeHook(Hook):
    """Store the RNG states in checkpoints and restore them on resume.

    Priority ``'LOW'``: after the other ``before_train_epoch`` hooks and, in
    ``after_train_iter``/``after_train_epoch``, before the ``CheckpointHook``
    (``'VERY_LOW'``), which lets it gather every rank's states before a save
    in distributed training.

    Args:
        neutral_validation: Restore the training RNG states after each
            validation, so that validating does not change training.
    """

    priority = 'LOW'

    def __init__(self, neutral_validation: bool = True) -> None:
        self.neutral_validation = neutral_validation
        self._loaded: Optional[dict] = None
        self._val_states: Optional[List[Dict[str, Any]]] = None
        self._gathered: Optional[List[Dict[str, Any]]] = None

    # ----------------------------------------------------------- capturing
    def _collect(self) -> List[Dict[str, Any]]:
        """The RNG states of all ranks (a collective when distributed)."""
        state = get_rng_state()
        if get_world_size() > 1:
            return all_gather_object(state)
        return [state]

    def _checkpoint_due(self, runner, by_epoch: bool) -> bool:
        for hook in runner.hooks:
            if (not isinstance(hook, CheckpointHook)
                    or hook.by_epoch != by_epoch):
                continue
            if by_epoch:
                due = hook.every_n_epochs(runner, hook.interval,
                                          hook.save_begin)
                last = hook.save_last and hook.is_last_train_epoch(runner)
            else:
                due = hook.every_n_train_iters(runner, hook.interval,
                                               hook.save_begin)
                last = hook.save_last and hook.is_last_train_iter(runner)
            if due or last:
                return True
        return False

    def after_train_iter(self, runner, batch_idx: int,
                         data_batch: Any = None,
                         outputs: Optional[dict] = None) -> None:
        """Gather all ranks' states before an iteration checkpoint."""
        if get_world_size() > 1 and self._checkpoint_due(runner, False):
            self._gathered = self._collect()

    def after_train_epoch(self, runner) -> None:
        """Gather all ranks' states before an epoch checkpoint."""
        if get_world_size() > 1 and self._checkpoint_due(runner, True):
            self._gathered = self._collect()

    def before_val(self, runner) -> None:
        """Remember the training RNG states."""
        if self.neutral_validation or get_world_size() > 1:
            self._val_states = self._collect()

    def after_val(self, runner) -> None:
        """Give the training run its RNG states back."""
        if self._val_states is not None and self.neutral_validation:
            states = self._val_states
            set_rng_state(states[get_rank() if len(states) > 1 else 0])
        self._val_states = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Put the RNG states of every rank into the checkpoint.

        Args:
            runner: The runner.
            checkpoint: The checkpoint dict about to be saved.
        """
        if self._val_states is not None:  # e.g. a best checkpoint
            states = self._val_states
        elif get_world_size() > 1:
            if self._gathered is None:
                print_log(
                    'ExactResumeHook: no gathered RNG states for this '
                    'checkpoint (not saved by CheckpointHook?); storing rank '
                    "0's only.", logger='current', level=logging.WARNING)
                states = [get_rng_state()]
            else:
                states = self._gathered
        else:
            states = [get_rng_state()]
        self._gathered = None
        checkpoint[CHECKPOINT_KEY] = dict(world_size=len(states),
                                          states=states)

    # ----------------------------------------------------------- restoring
    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Keep the states of a loaded checkpoint until we know it resumes.

        Args:
            runner: The runner.
            checkpoint: The loaded checkpoint.
        """
        meta = checkpoint.get('meta', {}) or {}
        self._loaded = dict(
            rng=checkpoint.get(CHECKPOINT_KEY),
            epoch=meta.get('epoch'),
            iter=meta.get('iter'))

    def before_train_epoch(self, runner) -> None:
        """Arrange the restore when this run resumed from a checkpoint."""
        loaded, self._loaded = self._loaded, None
        if loaded is None:
            return
        # `load_from` without resume leaves the loop counters at 0; resume
        # sets them to the checkpoint's meta.
        if runner.iter != loaded['iter'] or runner.iter == 0:
            return
        rng = loaded['rng']
        if rng is None:
            print_log(
                'ExactResumeHook: the resumed checkpoint has no RNG states '
                '(it was saved without this hook); the resumed run will not '
                'reproduce the uninterrupted one exactly.',
                logger='current', level=logging.WARNING)
            return
        states = rng['states']
        if len(states) != get_world_size():
            print_log(
                f'ExactResumeHook: the checkpoint holds RNG states of '
                f'{len(states)} rank(s) but this run has {get_world_size()}; '
                'not restoring them, so the resume is not exact.',
                logger='current', level=logging.WARNING)
            return
        state = states[get_rank()]
        loop = runner.train_loop
        if isinstance(loop, IterBasedTrainLoop) or hasattr(
                loop, 'dataloader_iterator'):
            loop.dataloader_iterator = _RestoreBeforeFetch(
                loop.dataloader_iterator, runner.iter, state)
            return
        if isinstance(loop, EpochBasedTrainLoop):
            batches = len(loop.dataloader)
            if batches and runner.iter % batches:
                print_log(
                    'ExactResumeHook: resuming EpochBasedTrainLoop from a '
                    f'mid-epoch checkpoint (iter {runner.iter}, {batches} '
                    'batches per epoch). MMEngine restarts the epoch from its '
                    'first batch, so the resume is not exact; save '
                    'checkpoints at epoch ends or use IterBasedTrainLoop.',
                    logger='current', level=logging.WARNING)
        set_rng_state(state)

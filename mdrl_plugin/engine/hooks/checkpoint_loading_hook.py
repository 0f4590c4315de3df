"""Safe and strict checkpoint loading for a Runner, switched on by config."""
from typing import Any, Dict, List, Optional, Sequence, Union

from mmengine.hooks import Hook

from mdrl_plugin.registry import HOOKS
from ..checkpoint import (_EXTRA_GLOBALS, _resolve_global, check_state_dict,
                          disable_safe_checkpoint_loading,
                          enable_safe_checkpoint_loading,
                          safe_checkpoint_loading_enabled)

__all__ = ['CheckpointLoadingHook']


@HOOKS.register_module()
class CheckpointLoadingHook(Hook):
    """Load ``load_from`` / ``--resume`` checkpoints safely and strictly.

    * ``safe=True``: for the run, MMEngine reads local checkpoints with the
      plugin's safe loader (see
      :func:`~mdrl_plugin.engine.enable_safe_checkpoint_loading`), plus the
      classes named in ``allow_globals``; the previous loader is put back
      after the run.
    * The checkpoint's weights must match the model's keys and shapes
      (:class:`~mdrl_plugin.engine.CheckpointMismatchError` otherwise), unless
      ``allow_partial=True``, which loads what fits and logs the rest.

    ::

        custom_hooks = [dict(type='CheckpointLoadingHook',
                             allow_globals=['my_project.MyNote'])]

    Args:
        safe: Register the safe loader for the run.
        allow_globals: Extra trusted ``'module.Name'`` globals checkpoints
            may hold.
        allow_partial: Accept a checkpoint that does not fit the model.
    """

    priority = 'VERY_HIGH'

    def __init__(self,
                 safe: bool = True,
                 allow_globals: Sequence[str] = (),
                 allow_partial: bool = False) -> None:
        self.safe = safe
        self.allow_globals = list(allow_globals)
        self.allow_partial = allow_partial
        self._undo: Optional[Dict[str, Any]] = None

    def before_run(self, runner) -> None:
        """Switch the safe loader on (it runs before ``load_from``).

        Args:
            runner: The runner.
        """
        if not self.safe:
            return
        added: List[Any] = [
            obj for obj in map(_resolve_global, self.allow_globals)
            if obj not in _EXTRA_GLOBALS
        ]
        self._undo = dict(was_enabled=safe_checkpoint_loading_enabled(),
                          added=added)
        enable_safe_checkpoint_loading(added)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Compare the checkpoint's weights with the model.

        Args:
            runner: The runner.
            checkpoint: The loaded checkpoint.
        """
        check_state_dict(
            runner.model, checkpoint.get('state_dict', checkpoint),
            self._filename(runner), self.allow_partial,
            config=getattr(runner.cfg, 'filename', None))

    def after_run(self, runner) -> None:
        """Put the previous checkpoint loader back.

        Args:
            runner: The runner.
        """
        if self._undo is None:
            return
        undo, self._undo = self._undo, None
        if not undo['was_enabled']:
            disable_safe_checkpoint_loading()
            return
        for obj in undo['added']:
            if obj in _EXTRA_GLOBALS:
                _EXTRA_GLOBALS.remove(obj)

    @staticmethod
    def _filename(runner) -> Union[str, Any]:
        return getattr(runner, '_load_from', None) or '<checkpoint>'
